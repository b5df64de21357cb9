"""The chat tokenizer, SFT's loss mask, masked batches and batched completion (common/data/chat.py,
common/train/posttrain.py)."""

import pytest
import torch

from common.data import instruct
from common.data.chat import ALPHABET, MARKERS, ChatTokenizer, MaskedBatches, to_ascii
from common.eval import tool_use
from common.nn.model import GPT, GPTConfig
from common.train import posttrain

TOK = ChatTokenizer()


def test_markers_are_single_tokens_and_text_round_trips():
    text = f"{instruct.USER}What is 3 + 4?{instruct.ASSISTANT}7{instruct.END}"
    ids = TOK.encode(text)
    assert len(ids) == len("What is 3 + 4?") + 1 + 3  # one id per character, one per marker
    assert ids[0] == TOK.id(instruct.USER) and ids[-1] == TOK.id(instruct.END)
    assert TOK.decode(ids) == text
    assert TOK.vocab_size == len(MARKERS) + len(ALPHABET) == len(set(TOK.vocab))
    assert TOK.pad_id == 0
    every = "".join(ALPHABET) + "".join(MARKERS)
    assert TOK.decode(TOK.encode(every)) == every


def test_unknown_characters_fold_or_become_question_marks():
    assert to_ascii("caf\u00e9 \u201cquoted\u201d \u2014 ok\u2026 \u4e2d") == 'cafe "quoted" - ok... '
    assert TOK.decode(TOK.encode("a\u4e2db")) == "a?b"


@pytest.mark.parametrize("family", instruct.FAMILIES)
def test_the_mask_covers_exactly_the_assistant_tokens(family):
    ex = instruct.generate(5, seed=3, families=[family])["train"][0]
    text, span = instruct.render(ex)
    ids, mask = TOK.encode_spans(text, [span])
    masked = TOK.decode([i for i, m in zip(ids, mask) if m])
    assert masked == ex.answer + instruct.END
    prompt_ids = TOK.encode(instruct.render(ex, False)[0])
    assert ids[:len(prompt_ids)] == prompt_ids and not any(mask[:len(prompt_ids)])
    assert all(mask[len(prompt_ids):])


def test_tool_trace_mask_skips_the_tools_result():
    ex = instruct.Example("word", 0, "Ada has 12 shells and gets 9 more. How many shells now?", "21", "12 + 9")
    ids, mask = TOK.encode_spans(*tool_use.render_tool_trace(ex))
    trained = TOK.decode([i for i, m in zip(ids, mask) if m])
    assert trained == f"{tool_use.CALL}12 + 9{tool_use.CALL_END}21{instruct.END}"
    assert ids[0] == TOK.id(tool_use.TOOLS)


def test_masked_batches_ignore_prompt_and_padding():
    seqs = [([5, 6, 7, 8], [False, False, True, True]), ([5, 6], [False, True])]
    b = MaskedBatches(seqs, batch_size=2, block_size=8)
    x, y = b.fixed(1)[0]
    assert x.tolist() == [[5, 6, 7], [5, 6, 0]]  # inputs: every token but the last of the padded row
    assert y.tolist() == [[-1, 7, 8], [6, -1, -1]]
    with pytest.raises(ValueError, match="longer than block_size"):
        MaskedBatches(seqs, batch_size=2, block_size=2)


def test_sft_loss_is_the_mean_over_masked_tokens():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    seqs = [([5, 6, 7, 8], [False, False, True, True]), ([5, 9, 10], [False, True, True])]
    x, y = MaskedBatches(seqs, 2, 8).fixed(1)[0]
    logits, loss = model(x, y)
    logp = torch.log_softmax(logits, -1)
    picked = [-logp[b, t, y[b, t]] for b in range(2) for t in range(y.shape[1]) if y[b, t] >= 0]
    assert len(picked) == 4
    torch.testing.assert_close(loss, torch.stack(picked).mean())


def test_batched_completion_equals_one_prompt_at_a_time():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32, pos="rope")).eval()
    prompts = ["<|user|>ab<|assistant|>", "<|user|>a much longer prompt<|assistant|>", "<|user|>x<|assistant|>"]
    together = posttrain.complete(model, prompts, max_new=6, batch_size=3)
    alone = [posttrain.complete(model, [p], max_new=6)[0] for p in prompts]
    assert together == alone
    ids = TOK.encode(prompts[1])  # greedy by hand for one prompt
    for _ in range(6):
        nxt = int(model(torch.tensor([ids]))[0][0, -1].argmax())
        ids.append(nxt)
        if nxt == TOK.id(instruct.END):
            break
    assert together[1] == TOK.decode(ids[len(TOK.encode(prompts[1])):])


def test_tool_answers_run_the_calculator_on_the_models_call():
    """A scripted 'model' writes a call, then copies whatever result the runtime fed back as its answer."""
    call = TOK.encode(f"{tool_use.CALL}6 * 7{tool_use.CALL_END}")
    result_end, end = TOK.id(tool_use.RESULT_END), TOK.id(instruct.END)

    class Scripted(torch.nn.Module):
        cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=200, n_layer=1, n_head=1, n_embd=8)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros((*x.shape, TOK.vocab_size))
            for b, row in enumerate(x.tolist()):
                for t in range(len(row)):
                    seen = row[:t + 1]
                    if TOK.id(instruct.ASSISTANT) not in seen:  # still in the prompt: any prediction will do
                        continue
                    turn = seen[len(seen) - seen[::-1].index(TOK.id(instruct.ASSISTANT)):]
                    if result_end not in turn:  # still writing the call
                        nxt = call[min(len(turn), len(call) - 1)]
                    else:                       # copy the fed-back result, then stop
                        text = TOK.decode(turn)
                        fed = text.split(tool_use.RESULT)[1].split(tool_use.RESULT_END)[0]
                        written = text.split(tool_use.RESULT_END)[1]
                        nxt = TOK.id(fed[len(written)]) if len(written) < len(fed) else end
                    logits[b, t, nxt] = 1e9
            return logits, None

    ex = instruct.Example("word", 5, "Ada buys 6 bags with 7 coins each. How many coins in all?", "42", "6 * 7")
    turn, calls = posttrain.answer_with_tools(Scripted(), [ex])[0]
    assert calls == [("6 * 7", "42")]
    assert turn == f"{tool_use.CALL}6 * 7{tool_use.CALL_END}{tool_use.RESULT}42{tool_use.RESULT_END}42{instruct.END}"
    assert posttrain.score(Scripted(), [ex], tools=True)[0]["correct"]
