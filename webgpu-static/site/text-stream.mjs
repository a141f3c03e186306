// An answer's text as its tokens come, in constant work per token: each token decodes only a short window of
// the last tokens, not the whole answer. Pure (decode is given), so Node.js tests run it on a real tokenizer.
//
// The window's technique is text-generation-inference's: decode ids[start:] and ids[start:read], and the new text
// is what the first has past the second. Decoding both from the same start keeps a decoder's first-token rules
// (a SentencePiece leading space) out of the difference. Text is held back while it may still change:
//  - it ends in U+FFFD: the last token may end inside a multi-byte character that the next token completes;
//  - it ends where the tokenizer's clean-up of spaces (" ." -> ".", " n't" -> "n't"…) could still remove a space.
// The caller compares the result with one full decode at the end (ChatModel.decode): see chat.mjs.

// The ends of text that a clean-up rule may still rewrite once more text follows: a space, " n", " n'", " '",
// " 'v", " 'r" (the rules' proper prefixes), and a replacement character.
const UNSETTLED = /(?:\uFFFD| (?:n'?|'[vr]?)?)$/;

export class TextStream {
  /** decode(ids) -> string, for a non-empty array of token ids. */
  constructor(decode) {
    this.decode = decode;
    this.ids = [];
    this.start = 0; // where the window begins: its tokens' text was emitted already
    this.read = 0; // up to where the text was emitted
    this.text = '';
  }

  window(from, to) {
    return to > from ? this.decode(this.ids.slice(from, to)) : '';
  }

  /** Adds a token; returns the text it settles (often the token's own, '' while held back). */
  push(id) {
    this.ids.push(id);
    return this.advance(false);
  }

  /** The text still held back, at the end of the answer. */
  end() {
    return this.advance(true);
  }

  advance(last) {
    const before = this.window(this.start, this.read);
    const now = this.window(this.start, this.ids.length);
    if (now.length <= before.length || !now.startsWith(before) || (!last && UNSETTLED.test(now))) return '';
    const added = now.slice(before.length);
    this.start = this.read;
    this.read = this.ids.length;
    this.text += added;
    return added;
  }
}
