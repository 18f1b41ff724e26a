"""Train the injection classifier from the shipped labelled set.

Run ``python -m keelway.guardrails.training`` after changing
``data/injection_train.jsonl``. It normalizes each text as the scanner does,
embeds it with MiniLM, fits a logistic regression with scikit-learn and
writes ``data/injection_classifier.npz``: the coefficients, the intercept and
the SHA-256 of the training file, so a test can tell whether the shipped
weights came from the shipped set. scikit-learn is a development dependency;
the scanner itself needs only numpy to apply the weights.

``--evaluate`` also prints precision, recall and false-positive rate per
technique on the held-out ``injection_eval.jsonl``, for rules only and for
rules plus classifier. Nothing is tuned on that set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from keelway.guardrails.base import ScanContext
from keelway.guardrails.injection import (
    CLASSIFIER_FILE,
    DATA_DIR,
    MAX_WINDOW_TOKENS,
    InjectionClassifier,
    InjectionScanner,
    embed,
)
from keelway.guardrails.normalize import normalize

TRAIN_FILE = DATA_DIR / "injection_train.jsonl"
EVAL_FILE = DATA_DIR / "injection_eval.jsonl"
# Inverse regularization strength of the logistic regression. The training
# set is small, so weights are kept moderate.
REGULARIZATION_C = 4.0
THRESHOLD = 0.5
# The intercept is shifted so that this share of benign training examples,
# scored by models that did not see them (cross-validation), stays below the
# threshold. Resubstitution scores would be overconfident on so small a set.
BENIGN_QUANTILE = 0.98
CV_FOLDS = 5


def load_examples(path: Path) -> list[dict[str, Any]]:
    """Read a labelled JSONL file, one example per line."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embed_examples(examples: list[dict[str, Any]]) -> np.ndarray:
    """Embed each example's normalized text, raising ValueError for an over-long one."""
    from keelway.providers.embeddings import local_encoder

    texts = [normalize(example["text"]).text for example in examples]
    tokenizer = local_encoder().tokenizer
    for example, text in zip(examples, texts, strict=True):
        pieces = len(
            tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        )
        if pieces > MAX_WINDOW_TOKENS:
            raise ValueError(
                f"training example {example['id']} has {pieces} word pieces; the"
                f" encoder reads at most {MAX_WINDOW_TOKENS}, so shorten it"
            )
    return embed(texts)


def fit(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit the logistic regression and return its coefficients and intercept."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        C=REGULARIZATION_C, class_weight="balanced", max_iter=5000, solver="lbfgs"
    )
    model.fit(embeddings.astype(np.float64), labels)
    return model.coef_.reshape(-1).astype(np.float32), float(model.intercept_[0])


def calibration_shift(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Return how far to lower the intercept, from cross-validated benign logits.

    The shift is zero when the benign quantile already scores below the
    threshold, so calibration only ever makes the classifier stricter.
    """
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=0)
    benign_logits: list[float] = []
    for train_index, test_index in folds.split(embeddings, labels):
        coef, intercept = fit(embeddings[train_index], labels[train_index])
        logits = embeddings[test_index] @ coef + intercept
        benign_logits.extend(logits[labels[test_index] == 0].tolist())
    return max(0.0, float(np.quantile(benign_logits, BENIGN_QUANTILE)))


def train(path: Path = TRAIN_FILE) -> InjectionClassifier:
    """Train a classifier on the examples in ``path``."""
    examples = load_examples(path)
    labels = np.array([int(example["label"]) for example in examples])
    embeddings = embed_examples(examples)
    coef, intercept = fit(embeddings, labels)
    shift = calibration_shift(embeddings, labels)
    return InjectionClassifier(coef, intercept - shift, file_sha256(path))


def save(classifier: InjectionClassifier, path: Path) -> None:
    """Write the classifier's weights and training-file hash to ``path``."""
    np.savez(
        path,
        coef=classifier.coef,
        intercept=np.array([classifier.intercept], dtype=np.float32),
        train_sha256=np.array(classifier.train_sha256),
    )


def evaluate(
    scanner: InjectionScanner, examples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return counts and rates per technique at :data:`THRESHOLD`.

    For attack techniques the rate is recall (attacks scored at or above the
    threshold); for benign ones it is the false-positive rate.
    """
    scanner.prefill([example["text"] for example in examples])
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    true_positive = false_positive = attacks = benign = 0
    for example in examples:
        context = ScanContext(source=example.get("source", "user"))
        flagged = scanner.scan(example["text"], context).score >= THRESHOLD
        counts[example["technique"]][0] += int(flagged)
        counts[example["technique"]][1] += 1
        if example["label"]:
            attacks += 1
            true_positive += int(flagged)
        else:
            benign += 1
            false_positive += int(flagged)
    flagged_total = true_positive + false_positive
    return {
        "recall": true_positive / attacks if attacks else 0.0,
        "precision": true_positive / flagged_total if flagged_total else 1.0,
        "false_positive_rate": false_positive / benign if benign else 0.0,
        "techniques": {name: tuple(value) for name, value in sorted(counts.items())},
    }


def _print_report(title: str, report: dict[str, Any]) -> None:
    print(
        f"{title}: recall {report['recall']:.3f}, precision {report['precision']:.3f},"
        f" FPR {report['false_positive_rate']:.3f}"
    )
    for name, (flagged, total) in report["techniques"].items():
        print(f"  {name:22} flagged {flagged:3d} of {total:3d}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=DATA_DIR / CLASSIFIER_FILE,
        help="where to write the weights (default: the shipped file)",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="print per-technique figures on the training and held-out sets",
    )
    args = parser.parse_args(argv)
    classifier = train()
    save(classifier, args.output)
    print(f"wrote {args.output} (training set sha256 {classifier.train_sha256})")
    if args.evaluate:
        for name, path in (("train", TRAIN_FILE), ("eval", EVAL_FILE)):
            examples = load_examples(path)
            rules_only = InjectionScanner(classifier=False)
            both = InjectionScanner(model=classifier)
            _print_report(f"{name} rules only", evaluate(rules_only, examples))
            _print_report(f"{name} rules + classifier", evaluate(both, examples))


if __name__ == "__main__":
    main()
