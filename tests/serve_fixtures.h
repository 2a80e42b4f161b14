// Models for the server tests whose output is known in advance: a real GGUF llama that runs
// through the whole engine, built so that greedy decoding recites a script.
#pragma once

#include <string>

namespace moe::test {

// Writes a llama model over stories260K's vocabulary whose next token depends only on the
// current one: every token outside the script leads to the script's first token, each script
// token to the next, and the last to EOS (or, with loop, back to the first, so it never ends).
// The script's tokens must be distinct (checked). chat_template is stored when non-empty.
// Decoding from any prompt therefore yields exactly `script` (its leading space aside).
void write_script_model(const std::string& path, const std::string& script, bool loop,
                        const std::string& chat_template = "");

}  // namespace moe::test
