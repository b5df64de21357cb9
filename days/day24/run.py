"""Day 24: config design — parameter counts in closed form, FLOPs per token, and config YAMLs.

For every named model shape the project uses (the test/laptop/GPU presets of sprint 1 and the
sprint-3 pretraining shapes), the run instantiates the model, counts its parameters, compares
them with `count_params_formula` (exact match required), tabulates FLOPs per token from
`flops_per_token` (checked against PyTorch's FLOP counter in the tests) and KV-cache bytes per
token, and writes one YAML per shape that loads back into `GPTConfig` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from common.nn.kv_cache import kv_bytes
from common.nn.model import GPT, SHAPES, GPTConfig, count_params_formula, flops_per_token, non_embedding_params
from common.run import atomic, runner

DAY = 24
@dataclass
class Config:
    shapes: str = ",".join(SHAPES)   # which shapes to count and export


PRESETS = {"nano": dict(shapes="nano,day07_default,baby"), "cpu": {}, "gpu": {}}


def look_at(names: list[str]) -> str:
    """'What to look at' for the shapes table, computed from the shapes: where 6N is furthest off, which shape is
    most embedding, and what grouped-query attention saves in the KV cache."""
    ratio = {n: flops_per_token(SHAPES[n]) / (6 * count_params_formula(SHAPES[n])) for n in names}
    emb = {n: 1 - non_embedding_params(SHAPES[n]) / count_params_formula(SHAPES[n]) for n in names}
    far, lo = max(ratio, key=ratio.get), min(ratio.values())
    big_emb, c = max(emb, key=emb.get), SHAPES[max(ratio, key=ratio.get)]
    text = (f"What to look at: the exact training FLOPs are {lo:.2f}–{ratio[far]:.2f}× the 6N shortcut; the gap is "
            f"largest for {far} (context {c.block_size} against width {c.n_embd}), where attention's 4·L·T·C term "
            f"is {'no longer small' if c.block_size >= c.n_embd else 'largest relative to the matmuls'}. "
            f"The token and position tables are {emb[big_emb]:.0%} of {big_emb}'s parameters, the largest share here"
            + (f" (vocabulary {SHAPES[big_emb].vocab_size:,}): a small model with a big vocabulary is largely lookup "
               "table." if emb[big_emb] > 0.3 else ": with a small vocabulary the blocks hold nearly everything."))
    gqa = [n for n in names if SHAPES[n].n_kv_head and SHAPES[n].n_kv_head < SHAPES[n].n_head]
    for n in gqa:
        g = SHAPES[n]
        hs = g.n_embd // g.n_head
        full, kv = (kv_bytes(g.n_layer, 1, h, 1, hs, 2) for h in (g.n_head, g.n_kv_head))
        text += (f" {n} uses grouped-query attention ({g.n_kv_head} key/value heads for {g.n_head} query heads): "
                 f"{kv:,} KV bytes per token instead of {full:,}, a {full / kv:g}× smaller cache.")
    return text


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    out_dir = ctx.day_dir / "configs"
    rows, all_match, round_trips = [], True, True
    for name in cfg.shapes.split(","):
        c = SHAPES[name]
        counted = GPT(c).num_params()
        formula = count_params_formula(c)
        all_match &= counted == formula
        path = atomic.write_text(out_dir / f"{name}.yaml", f"# {name}: GPTConfig for common.nn.model.GPT\n"
                                 + OmegaConf.to_yaml(OmegaConf.structured(c)))
        loaded = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GPTConfig), OmegaConf.load(path)))
        round_trips &= loaded == c
        hs = c.n_embd // c.n_head
        rows.append({"shape": name, "layers × width": f"{c.n_layer} × {c.n_embd}", "heads (kv)":
                     f"{c.n_head} ({c.n_kv_head or c.n_head})", "vocab": c.vocab_size, "context": c.block_size,
                     "params (counted)": f"{counted:,}", "formula": "=" if counted == formula else f"≠ {formula:,}",
                     "non-embedding": f"{non_embedding_params(c):,}",
                     "train MFLOPs/token": round(flops_per_token(c) / 1e6, 2),
                     "6N rule (MFLOPs)": round(6 * counted / 1e6, 2),
                     "KV bytes/token (bf16)": kv_bytes(c.n_layer, 1, c.n_kv_head or c.n_head, 1, hs, 2)})
    d.section("Shapes, parameters and FLOPs")
    d.table(rows)
    d.text(f"Counted parameters equal the closed form for {'every' if all_match else 'NOT every'} shape (`=` in "
           f"the `formula` column{'' if all_match else ', else the formula value'}). Training "
           "FLOPs per token are 3 × the forward matmuls: 2 per weight of every matrix multiply plus 4·L·T·C for "
           "attention; the `6N` column is the usual shortcut, which ignores attention and counts every parameter "
           "(a learned position table included) as a matmul weight.")
    d.text(look_at(cfg.shapes.split(",")))
    d.section("Config files")
    d.text(f"{len(rows)} YAML files in `{out_dir.name}/`; each loads back into `GPTConfig` "
           f"{'unchanged' if round_trips else 'WITH CHANGES'} "
           f"(e.g. `OmegaConf.merge(OmegaConf.structured(GPTConfig), OmegaConf.load(path))`).")
    return {"shapes": len(rows), "all_params_match": bool(all_match), "yaml_round_trip": bool(round_trips),
            **{f"params_{r['shape']}": int(r["params (counted)"].replace(",", "")) for r in rows}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
