import pytest

from workbench import prompts


def test_zero_shot_is_the_reference_instruction():
    assert prompts.zero_shot("#Person1#: Hi.\n") == (
        "Summarize the following conversation.\n\n#Person1#: Hi.\n\nSummary: ")


def test_few_shot_blocks_end_with_an_open_target():
    text = prompts.few_shot("D3", [("D1", "S1"), ("D2", "S2")])
    assert text.count("What was going on?") == 3
    assert text.index("S1") < text.index("D2") < text.index("S2") < text.index("D3")
    assert text.endswith("Dialogue:\n\nD3\n\nWhat was going on?\n")
    assert prompts.build_prompt("D", [("a", "b")], style="blocks") == prompts.few_shot("D", [("a", "b")])


def test_the_form_follows_the_shots_unless_forced():
    """One rule for every caller (the Prompting tab's one/few-shot and zero-shot runs): shots -> blocks, none ->
    the instruction prompt the fine-tunes were trained on."""
    assert prompts.build_prompt("D") == prompts.zero_shot("D")
    assert prompts.build_prompt("D", [("a", "b")]) == prompts.few_shot("D", [("a", "b")])
    assert prompts.build_prompt("D", style="blocks") == prompts.few_shot("D")


def test_instruction_style_refuses_shots():
    with pytest.raises(ValueError, match="blocks"):
        prompts.build_prompt("D", [("a", "b")], style="instruction")
    with pytest.raises(ValueError, match="unknown prompt style"):
        prompts.build_prompt("D", style="chat")
