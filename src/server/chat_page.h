// The browser chat page `moe serve` returns for GET /: one self-contained HTML document (inline CSS and
// vanilla JS; it loads nothing else, so it works offline and under
//   Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';
//                            connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'
// which the server may send with it, together with Content-Type: text/html; charset=utf-8).
//
// What the page asks of the server (URLs are relative to the page, so GET / implies /v1/...):
//  * GET v1/models -> {"object":"list","data":[{"id":"<model>",...},...]}; the ids fill the model picker.
//  * POST v1/chat/completions with {"model","messages":[{"role","content"},...],"stream":true,
//    "stream_options":{"include_usage":true}} plus "temperature"/"max_tokens" when the user set them. The
//    whole conversation is sent each turn; assistant turns carry only their content, never the reasoning.
//  * The reply is an SSE stream (Content-Type: text/event-stream, which the page checks) of
//    "data: <chat.completion.chunk json>" events ended by "data: [DONE]";
//    choices[0].delta.reasoning_content (the model's reasoning) and choices[0].delta.content (the answer)
//    are both optional in each chunk; a final chunk with "usage" {prompt_tokens, completion_tokens} (and
//    empty "choices") gives the usage line. A chunk {"error":{"message":...}} mid-stream is shown as an
//    error. Closing the connection mid-stream (the Stop button aborts the fetch) must be tolerated.
//  * Every request carries "Authorization: Bearer <key>" when the user entered a key (kept in the
//    browser's localStorage). Non-2xx replies should have the OpenAI error body {"error":{"message":...}},
//    whose message the page shows with the status (and Retry-After on 429).
// Stable for tests (tests/chat_page.mjs): #model #apikey #temperature #max_tokens #input #send #stop #clear
// #messages #error; each reply is a .msg.assistant holding details.reasoning (text in .reasoning-text),
// .content and .meta (usage), plus class "stopped" when stopped; body data-state is "idle"/"streaming" and
// data-models "loading"/"ready"/"error".
#pragma once

#include <string_view>

namespace moe::server {

// The page, UTF-8, valid for the life of the program.
std::string_view chat_page_html();

}  // namespace moe::server
