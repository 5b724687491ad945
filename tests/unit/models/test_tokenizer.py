from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from rftkit.models.tokenizer import SPECIAL_TOKENS, build_byte_tokenizer

TOKENIZER = build_byte_tokenizer()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_utf8_text_round_trips(text):
    ids = TOKENIZER(text, add_special_tokens=False)["input_ids"]
    assert TOKENIZER.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1).filter(lambda t: "<|" not in t))
def test_plain_text_is_one_token_per_byte(text):
    ids = TOKENIZER(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))


def test_vocabulary_is_bytes_then_special_tokens():
    assert len(TOKENIZER) == 256 + len(SPECIAL_TOKENS)
    assert TOKENIZER.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(256, 256 + len(SPECIAL_TOKENS)))
    assert TOKENIZER.eos_token == "<|end|>" and TOKENIZER.pad_token == "<|pad|>" and TOKENIZER.bos_token == "<|bos|>"


def test_chat_template_renders_the_documented_format():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2="}]
    text = TOKENIZER.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|system|>s<|end|><|user|>2+2=<|end|><|assistant|>"
    tools = [{"type": "function", "function": {"name": "f"}}]
    text = TOKENIZER.apply_chat_template(messages[1:], tools=tools, add_generation_prompt=False, tokenize=False)
    assert text == '<|bos|><|system|>Tools: f()<|end|><|user|>2+2=<|end|>'


def test_saved_tokenizer_loads_with_auto_tokenizer(tmp_path):
    TOKENIZER.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "héllo <|user|> 😀"
    assert loaded(text, add_special_tokens=False)["input_ids"] == TOKENIZER(text, add_special_tokens=False)["input_ids"]
    assert loaded.chat_template == TOKENIZER.chat_template
