"""The split seen as energy: end-to-end accuracy against energy per image for the front ends
of the small-front-end study (docs/results-frontends.md at commit 4123b5b; accuracies as
recorded there, not retrained), each behind the analog block (energy per inference from the
transient model, analog.energy_report.inference_figures, as `mixsig energy` reports it) or behind a digital head of the same shape.

    PYTHONPATH=. .venv/bin/python experiments/split_energy.py [--samples 64] [--dac-bits 8] [--adc-bits 8]
        [--plot experiments/split_energy.png]

The analog head's energy counts its converters (analog/energy_figures.py): the front end's
150 outputs enter the block through DACs and its 10 outputs leave through ADCs.
"""
import argparse

import numpy as np

from analog.energy_figures import ConverterCost
from analog.energy_report import DIGITAL, digital_macs, inference_figures
from pipeline.commands.bench import fashion_block

#: Horowitz 2014's energy per MAC (analog.energy_report.DIGITAL): arithmetic only, no memory
#: access is counted (which favours the digital side)
E_MAC = {"int8": DIGITAL["mac_int8"].value, "fp32": DIGITAL["mac_fp32"].value}
#: the digital head of the block's shape, 150 → 100 → 10
HEAD_MACS = digital_macs(150, 100, 10)["inference"]

#: docs/results-frontends.md (commit 4123b5b), test accuracy %, one seed: front end, MACs per
#: image, digital only (the encoder's own head), the analog block after its first training,
#: the best end-to-end figure of any co-training method (first training where none ran), and
#: the Keras backprop baseline of the block's shape on the same embeddings (mid-range; None: not recorded)
STUDY = [
    ("PCA 150", 0.118e6, 84.13, 80.78, 80.95, 85.69),
    ("CNN 4-8-16", 0.259e6, 90.46, 90.16, 90.47, None),
    ("CNN 8-16-32", 0.743e6, 91.32, 91.10, 91.20, 91.145),
    ("CNN 16-32-64", 2.390e6, 92.44, 92.41, 92.59, 92.17),
    ("CNN 32-64-128 (main job)", 8.392e6, 92.77, 92.77, 92.77, None),
    ("CNN 8-16-32, 40 epochs, augmented", 0.743e6, 93.05, 92.52, 92.99, 92.785),
]


def rows(e_analog: float) -> list[dict]:
    out = []
    for name, macs, digital, first, best, baseline in STUDY:
        for kind, e in E_MAC.items():
            front = macs * e
            out.append(dict(front_end=name, macs=macs, arithmetic=kind, front_j=front,
                            analog_j=front + e_analog, digital_head_j=front + HEAD_MACS * e,
                            saved_fraction=(HEAD_MACS * e - e_analog) / (front + HEAD_MACS * e),
                            acc_analog=best, acc_first=first, acc_digital_only=digital, acc_digital_head=baseline))
    return out


def plot(table, e_analog, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, kind in zip(axes, E_MAC):
        rs = [r for r in table if r["arithmetic"] == kind]
        for r in rs:
            ax.annotate("", xy=(r["analog_j"] * 1e9, r["acc_analog"]), xytext=(r["digital_head_j"] * 1e9,
                        r["acc_digital_head"] if r["acc_digital_head"] is not None else r["acc_digital_only"]),
                        arrowprops=dict(arrowstyle="->", color="0.6", lw=0.8))
            ax.annotate(r["front_end"], (r["analog_j"] * 1e9, r["acc_analog"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.scatter([r["analog_j"] * 1e9 for r in rs], [r["acc_analog"] for r in rs], marker="o", zorder=3,
                   label=f"front end + analog block with converters ({e_analog * 1e12:.0f} pJ), best end to end")
        ax.scatter([r["digital_head_j"] * 1e9 for r in rs if r["acc_digital_head"] is not None],
                   [r["acc_digital_head"] for r in rs if r["acc_digital_head"] is not None], marker="s", zorder=3,
                   label=f"front end + digital 150-100-10 head ({HEAD_MACS} MACs), backprop baseline")
        ax.scatter([r["front_j"] * 1e9 for r in rs], [r["acc_digital_only"] for r in rs], marker="x", zorder=3,
                   label="digital only (the encoder's own head)")
        ax.set_xscale("log")
        ax.set_xlabel(f"energy per image (nJ), {kind} MACs at {E_MAC[kind] * 1e12:.2f} pJ (Horowitz 2014)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Fashion-MNIST test accuracy (%)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64, help="transient inferences for the analog energy")
    ap.add_argument("--dac-bits", type=int, default=8, help="input DAC bits (0: none counted)")
    ap.add_argument("--adc-bits", type=int, default=8, help="output ADC bits (0: none counted)")
    ap.add_argument("--plot", default="experiments/split_energy.png")
    args = ap.parse_args()
    x = np.random.default_rng(0).uniform(-1, 1, (args.samples, 150))   # the main job's block shape
    inf = inference_figures(fashion_block(), x, ConverterCost(args.dac_bits or None, args.adc_bits or None))
    e_analog, e_conv = inf["inference_energy_j"], inf["inference_converter_energy_j"]
    e_circuit = e_analog - e_conv
    table = rows(e_analog)
    print(f"analog block: {e_analog * 1e12:.2f} pJ per inference (circuit {e_circuit * 1e12:.2f} pJ + converters "
          f"{e_conv * 1e12:.2f} pJ: {args.dac_bits}-bit DACs, {args.adc_bits}-bit ADCs); digital head {HEAD_MACS} MACs")
    print("| front end | MACs | arithmetic | front end (nJ) | + analog block (nJ) | + digital head (nJ) | "
          "energy saved by the analog block | accuracy: analog, best end to end | digital head (backprop) | "
          "digital only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        dh = "–" if r["acc_digital_head"] is None else f"{r['acc_digital_head']:.2f}"
        print(f"| {r['front_end']} | {r['macs'] / 1e6:.3f} M | {r['arithmetic']} | {r['front_j'] * 1e9:.3g} | "
              f"{r['analog_j'] * 1e9:.4g} | {r['digital_head_j'] * 1e9:.4g} | {100 * r['saved_fraction']:.2f} % | "
              f"{r['acc_analog']:.2f} | {dh} | {r['acc_digital_only']:.2f} |")
    plot(table, e_analog, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
