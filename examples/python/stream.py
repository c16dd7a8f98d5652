"""The smallest streaming program: load a model, generate from a prompt, print
text as it arrives.  Usage: python stream.py MODEL.llm [PROMPT]

Needs the bindings (pip install ./bindings/python) and libllm's shared library
(found through LIBLLM_PATH, a bundled copy, build/ of the checkout, or the
system loader)."""

import sys

import libllm


def main() -> int:
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} MODEL.llm [PROMPT]", file=sys.stderr)
        return 2
    prompt = sys.argv[2] if len(sys.argv) > 2 else "Once upon a time"
    try:
        with libllm.Model(sys.argv[1]) as model, model.session() as session:
            print(prompt, end="", flush=True)
            for piece in session.generate(prompt, max_tokens=64):  # complete UTF-8 pieces
                print(piece, end="", flush=True)
            print()
    except (libllm.LlmError, libllm.LibraryNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
