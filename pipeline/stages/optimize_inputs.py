"""optimize-inputs: gradient descent on the block's input voltages → target embeddings
(with hardware.frozen and programmed chips: on the realised circuit and conductances of the
chip in the loop, hardware.loop_chip, read with noise at every step: an analog Chip as the Block;
with hardware.loop_chips on the population of those chips: the input gradient is the mean of
the chips' gradients and the margin is taken on their mean class scores, so the targets are
inputs that work on the chips on average, not on one of them)."""
from __future__ import annotations

from pipeline.flow.artifacts import load_analog, load_embeddings, save_npz
from pipeline.flow.stage_data import input_box
from pipeline.flow.runner import Stage, StageContext


def body(ctx: StageContext) -> None:
    from pipeline.hardware import population
    from pipeline.hardware import settings as hw
    from pipeline.flow import plots
    from pipeline.system.input_optimization import optimize_inputs_for
    io = ctx.cfg.input_optimization
    data = load_embeddings(ctx.input("embeddings"))
    model = load_analog(ctx.input("analog"))
    lo, hi = input_box(ctx.cfg, data)
    block = model
    if ctx.has("chips") and hw.frozen(ctx.cfg):   # the frozen chip in the loop, read with noise
        block = population.loop_block(ctx, model)
        seeds = getattr(block, "seeds", None) or [block.seed]
        ctx.log({"inputopt_on_chip_seed": seeds[0]} if len(seeds) == 1 else {"inputopt_loop_chips": len(seeds)})
        ctx.say(f"on {population.loop_label(ctx.cfg)} (seeds {', '.join(map(str, seeds))}), conductances read at "
                "t = 0 s")
    ctx.say(f"{len(data['x_train'])} samples, ≤{io.steps} steps of {io.lr} ({io.update}), "
            f"margin {io.margin} V, cost {io.cost}, box [{lo:g}, {hi:g}] V")
    try:
        res = optimize_inputs_for(ctx.cfg, block, data["x_train"], data["y_train"], lo, hi,
                                  progress=bool(ctx.verbose))
    finally:
        if block is not model:
            block.close()
        model.close()
    m = res.metrics()
    ctx.log(m)
    ctx.log_parent({f"round_inputopt_{k}": m[k] for k in ("reached_fraction", "initially_reached_fraction",
                                                           "mean_shift", "max_shift", "seconds")})
    ctx.say(f"reached {m['reached_fraction']:.3f} (initially {m['initially_reached_fraction']:.3f}), "
            f"mean shift {m['mean_shift']:.3g} V, max {m['max_shift']:.3g} V, {m['seconds']:.1f} s")
    save_npz(ctx.output("targets"), "targets.npz", targets=res.targets, y_train=data["y_train"], reached=res.reached,
             margin_before=res.margin_before, margin_after=res.margin_after, shift=res.shifts)
    plots.value_histograms({"shift per sample (L2, V)": res.shifts, "margin before (V)": res.margin_before,
                            "margin after (V)": res.margin_after}, ctx.folder / "plots" / "input_optimization.png",
                           title="input optimisation")
    ctx.artifact(ctx.folder / "plots", "plots")


STAGE = Stage(name="optimize-inputs", help="gradient descent on the block's input voltages → target embeddings",
              needs=("analog", "embeddings"), optional=("chips",), produces=("targets",), body=body)
