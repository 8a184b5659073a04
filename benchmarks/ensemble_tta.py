"""Score saved models alone and averaged, with and without test-time augmentation, on one split.

    python benchmarks/ensemble_tta.py data models 0,1,2
    python benchmarks/ensemble_tta.py /scratch/ens/data 'models/strong-e20-s42*' 0,1

DATA_DIR is a pipeline data directory: its one ``processed/*/data.pkl`` (PrepareData's split, or
``--data`` when it holds several) is read, and every ``model.pkl`` under DATA_DIR/MODELS (a folder
or a glob of model folders) is scored. For each TTA level (:func:`pipeline.evaluate.tta.views`) it prints each model's validation and test
accuracy, then those of the average of their probabilities (what ``EvaluateCNN --ensemble K --tta T``
scores). Choose by validation; the test figure is reported, never for choosing. Every file is read
verified (its manifest's sha256) and unpickled by the pipeline's restricted loader.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline import store
from pipeline.evaluate.ensemble import accuracy, average_probabilities
from pipeline.evaluate.tta import tta_probabilities
from pipeline.nn.serialize import model_from_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="a pipeline data directory (holds processed/ and models/)")
    parser.add_argument("models", help="model folders under it: a folder of them, or a glob such as 'models/strong*'")
    parser.add_argument("tta", help="TTA levels, comma-separated, e.g. 0,1 (0 = the image alone)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the split the models were trained on, when DATA_DIR holds several")
    args = parser.parse_args()

    splits = sorted(args.data_dir.glob("processed/*/data.pkl")) if args.data is None else [args.data]
    if len(splits) != 1:
        parser.error(f"{len(splits)} PrepareData splits (processed/*/data.pkl) under {args.data_dir}: "
                     + ("run PrepareData there first" if not splits else "name the models' one with --data"))
    data_path = splits[0]
    data = store.read_verified_pickle(data_path)
    found = sorted(args.data_dir.glob(f"{args.models}/model.pkl")) or sorted(args.data_dir.glob(f"{args.models}/*/model.pkl"))
    if not found:
        parser.error(f"no model.pkl under {args.data_dir / args.models}")
    models = {path.parent.name: model_from_state(store.read_verified_pickle(path)) for path in found}
    print(f"# {data_path}: {len(data['y_val'])} validation, {len(data['y_test'])} test images; {len(models)} models")
    for tta in (int(t) for t in args.tta.split(",")):
        start = time.perf_counter()
        val, test = [], []
        for name, model in models.items():
            val.append(tta_probabilities(model, data["x_val"], tta))
            test.append(tta_probabilities(model, data["x_test"], tta))
            print(f"tta {tta}  {name}: validation {accuracy(val[-1], data['y_val']):.2%}, "
                  f"test {accuracy(test[-1], data['y_test']):.2%}", flush=True)
        if len(models) > 1:
            print(f"tta {tta}  average of {len(models)}: validation {accuracy(average_probabilities(val), data['y_val']):.2%}, "
                  f"test {accuracy(average_probabilities(test), data['y_test']):.2%}", flush=True)
        print(f"tta {tta}  scored in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
