"""The text a length template wraps around a sample: fixed chat shapes, and a tokenizer's own chat template.

Every template renders `before + instruction + between + output + after`, the way a trainer
builds the training text of one user and one assistant message. Special tokens are part of
that text (`<s>`, `<|im_start|>`); counting it never adds any (see lengths.py).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

LENGTH_TEMPLATES = ("raw", "vicuna", "llama-2", "llama-3", "chatml", "chat")

# The system line of FastChat's "vicuna_v1.1" conversation template, which the Mosaic-IT
# paper trained with. It is reproduced verbatim because counting that prompt exactly is
# the point of the `vicuna` length template.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# Stand-ins for the messages while a chat template is rendered; found verbatim in its output.
_INSTRUCTION_MARK = "\u27eainstruction-7f3a\u27eb"
_OUTPUT_MARK = "\u27eaoutput-7f3a\u27eb"
# Messages with whitespace around them: a template that places them neither verbatim nor trimmed is refused.
_PROBES = (" \n first probe, of the user \t", "\n\tsecond probe: the assistant's  ")


class LengthTemplateError(ValueError):
    """A --length-template or --system-prompt that cannot work; the message is one line naming the option."""


class Shape(NamedTuple):
    """The rendered text around the messages. `end_tokens`: special tokens the trainer adds after the text
    (vicuna's end of sequence); `trims`: the template strips whitespace around each message, as Jinja's `trim`."""

    before: str
    between: str
    after: str
    end_tokens: int = 0
    trims: bool = False

    def text(self, instruction: str, output: str) -> str:
        if self.trims:
            instruction, output = instruction.strip(), output.strip()
        return f"{self.before}{instruction}{self.between}{output}{self.after}"


def template_shape(name: str, system_prompt: str | None, tokenizer: str) -> Shape:
    """The shape of a named template; `chat` reads the chat template of the `hf:` tokenizer."""
    if name not in LENGTH_TEMPLATES:
        raise LengthTemplateError(f"--length-template '{name}' is unknown; choose one of {', '.join(LENGTH_TEMPLATES)}")
    if name == "raw":
        if system_prompt is not None:
            others = ", ".join(LENGTH_TEMPLATES[1:])
            raise LengthTemplateError(f"--system-prompt needs a length template with a system part ({others}), not raw")
        return Shape("", "", "")
    if name == "vicuna":
        return Shape(f"{VICUNA_SYSTEM if system_prompt is None else system_prompt} USER: ", " ASSISTANT: ", "", 1)
    if name == "llama-2":
        system = "" if system_prompt is None else f"<<SYS>>\n{system_prompt}\n<</SYS>>\n\n"
        return Shape(f"<s>[INST] {system}", " [/INST] ", " </s>")
    if name == "llama-3":
        system = "" if system_prompt is None else _llama3_message("system", system_prompt)
        user, assistant = (
            "<|start_header_id|>user<|end_header_id|>\n\n",
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        )
        return Shape(f"<|begin_of_text|>{system}{user}", f"<|eot_id|>{assistant}", "<|eot_id|>")
    if name == "chatml":
        system = "" if system_prompt is None else f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
        return Shape(f"{system}<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>\n")
    scheme, _, tokenizer_name = tokenizer.partition(":")
    if scheme != "hf":
        raise LengthTemplateError(
            f"--length-template chat renders the chat template of an hf: tokenizer, and --tokenizer is '{tokenizer}'"
        )
    return _chat_shape(tokenizer_name, system_prompt)


def _llama3_message(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"


@functools.lru_cache(maxsize=8)
def _chat_shape(tokenizer_name: str, system_prompt: str | None) -> Shape:
    """The chat template rendered around stand-ins for the messages, checked to place them verbatim or trimmed."""
    from transforms.core.tokens import auto_tokenizer

    tokenizer = auto_tokenizer(tokenizer_name)
    if not getattr(tokenizer, "chat_template", None):
        raise LengthTemplateError(f"--length-template chat: the tokenizer '{tokenizer_name}' has no chat template")

    def render(instruction: str, output: str) -> str:
        system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        messages = [*system, {"role": "user", "content": instruction}, {"role": "assistant", "content": output}]
        try:
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        except Exception as err:  # Jinja reports a template's own refusal (raise_exception) as any type
            carrying = " with a system message" if system_prompt is not None else ""
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise LengthTemplateError(
                f"--length-template chat: the chat template of '{tokenizer_name}' fails{carrying}: {reason}"
            ) from None

    rendered = render(_INSTRUCTION_MARK, _OUTPUT_MARK)
    before, _, rest = rendered.partition(_INSTRUCTION_MARK)
    between, _, after = rest.partition(_OUTPUT_MARK)
    if rendered.count(_INSTRUCTION_MARK) != 1 or rendered.count(_OUTPUT_MARK) != 1 or _OUTPUT_MARK in before:
        raise LengthTemplateError(
            f"--length-template chat: the chat template of '{tokenizer_name}' does not show each message once, in order"
        )
    if system_prompt is not None and system_prompt.strip() not in before:
        raise LengthTemplateError(
            f"--length-template chat: the chat template of '{tokenizer_name}' leaves out the --system-prompt"
        )
    probed = render(*_PROBES)
    for trims in (False, True):
        shape = Shape(before, between, after, 0, trims)
        if probed == shape.text(*_PROBES):
            return shape
    raise LengthTemplateError(
        f"--length-template chat: the chat template of '{tokenizer_name}' changes the messages' text beyond "
        "trimming it, so its length cannot be counted exactly"
    )
