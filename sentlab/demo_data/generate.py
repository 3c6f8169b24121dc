"""Write the synthetic demo data set: short product reviews in 3 classes, for smoke runs.

    python -m sentlab.demo_data.generate            # writes train.csv, val.csv, test.csv here
    python -m sentlab.demo_data.generate --out DIR  # somewhere else

Every review is composed from the phrase lists below (written for this project), so the data
is synthetic: good for checking that a pipeline learns, not for judging a model. Classes are
balanced and no text appears twice. Mixed reviews (praise and complaint together) are neutral,
and positive and negative reviews sometimes concede a point to the other side, so no single
word decides the label.
"""
import argparse
import csv
import random
from pathlib import Path

SEED = 13
SIZES = {"train": 100, "val": 20, "test": 20}  # rows per class
LABELS = ("negative", "neutral", "positive")

PRODUCTS = [
    "pair of wireless headphones", "coffee grinder", "desk lamp", "pair of running shoes", "backpack", "blender",
    "phone case", "e-reader", "electric kettle", "office chair", "water bottle", "bluetooth speaker",
    "yoga mat", "air fryer", "mechanical keyboard", "umbrella", "rice cooker", "travel mug",
    "webcam", "hair dryer", "standing desk", "kitchen scale", "toaster", "camping tent",
]
ASPECTS = [
    "build quality", "price", "design", "setup", "manual", "packaging", "delivery",
    "customer service", "size", "colour", "weight", "finish",
]
OPENERS = [
    "I bought this {product} last month.", "Got the {product} on sale.",
    "Ordered this {product} as a gift.", "I have been using the {product} for a few weeks.",
    "We replaced our old {product} with this one.", "Picked up this {product} after reading the reviews.",
]
PRAISE = [
    "the {aspect} is excellent", "the {aspect} is better than I hoped", "I love the {aspect}",
    "the {aspect} is really impressive", "the {aspect} is top notch", "the {aspect} feels premium",
    "I am delighted with the {aspect}", "the {aspect} is fantastic",
]
COMPLAINTS = [
    "the {aspect} is awful", "the {aspect} is a real disappointment", "I hate the {aspect}",
    "the {aspect} feels flimsy and cheap", "the {aspect} is a joke", "the {aspect} is far worse than advertised",
    "the {aspect} gave me nothing but trouble", "the {aspect} is frustrating",
]
SO_SO = [
    "the {aspect} is fine", "the {aspect} is average", "the {aspect} is about what you would expect",
    "the {aspect} is neither good nor bad", "the {aspect} is acceptable", "the {aspect} is unremarkable",
    "there is nothing special about the {aspect}", "the {aspect} is okay I guess",
]
VERDICTS = {
    "positive": [
        "Highly recommended.", "I would buy it again in a heartbeat.", "Five stars.",
        "Best purchase I have made this year.", "Absolutely worth the money.", "My whole family loves it.",
        "I am very happy with it.", "Could not be more pleased.",
    ],
    "negative": [
        "I am sending it back.", "Save your money.", "I would not recommend it to anyone.",
        "One star, and that is generous.", "A complete waste of money.", "Avoid this one.",
        "Very disappointed.", "Never buying from this brand again.",
    ],
    "neutral": [
        "It does the job.", "Not great, not terrible.", "It is okay for the price.", "Three stars.",
        "It is fine for occasional use.", "I have mixed feelings about it.", "Nothing to write home about.",
        "Average overall.",
    ],
}
ADJECTIVES = {
    "positive": ["wonderful", "a delight to use", "excellent", "a great buy"],
    "negative": ["a disaster", "useless", "badly made", "a huge letdown"],
    "neutral": ["decent enough", "pretty ordinary", "just okay", "middle of the road"],
}
# {good}, {bad}, {meh} (and {good2}, ...): praise, complaint, so-so about an aspect; {verdict}, {adj}: the class's own.
TEMPLATES = {
    "positive": [
        "{opener} {Good}. {verdict}",
        "{Good} and {good2}. {verdict}",
        "Even though {bad}, {good} and {good2}. {verdict}",
        "This {product} is {adj}. {Good}.",
        "{verdict} {Good}, and {good2}.",
    ],
    "negative": [
        "{opener} {Bad}. {verdict}",
        "{Bad} and {bad2}. {verdict}",
        "Sure, {good}, but {bad} and {bad2}. {verdict}",
        "This {product} is {adj}. {Bad}.",
        "{verdict} {Bad}, and {bad2}.",
    ],
    "neutral": [
        "{opener} {Meh}. {verdict}",
        "{Good}, but {bad}. {verdict}",
        "This {product} is {adj}. {Meh}, and {meh2}.",
        "{verdict} {Meh}.",
        "{opener} {Meh}. {Good}, though {bad}.",
    ],
}


def review(label: str, rng: random.Random) -> str:
    product = rng.choice(PRODUCTS)
    aspects = iter(rng.sample(ASPECTS, 6))  # a different aspect in every phrase of one review

    def two(phrases):  # two different phrases, each about its own aspect
        return [phrase.format(aspect=next(aspects)) for phrase in rng.sample(phrases, 2)]

    good, good2 = two(PRAISE)
    bad, bad2 = two(COMPLAINTS)
    meh, meh2 = two(SO_SO)
    slots = {
        "product": product,
        "opener": rng.choice(OPENERS).format(product=product),
        "verdict": rng.choice(VERDICTS[label]),
        "adj": rng.choice(ADJECTIVES[label]),
        "good": good, "good2": good2, "bad": bad, "bad2": bad2, "meh": meh, "meh2": meh2,
    }
    # {Good} is {good} with a capital first letter, for the start of a sentence
    slots.update({key.capitalize(): value[0].upper() + value[1:] for key, value in list(slots.items())})
    return rng.choice(TEMPLATES[label]).format(**slots)


def make_splits(seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """{split: [(text, label), ...]}: balanced classes, every text unique across all splits."""
    rng = random.Random(seed)
    per_class = sum(SIZES.values())
    seen, splits = set(), {split: [] for split in SIZES}
    for label in LABELS:
        texts = []
        while len(texts) < per_class:
            text = review(label, rng)
            if text not in seen:
                seen.add(text)
                texts.append(text)
        start = 0
        for split, n in SIZES.items():
            splits[split] += [(text, label) for text in texts[start:start + n]]
            start += n
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def write(folder: Path, seed: int = SEED) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in make_splits(seed).items():
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        print(f"wrote {folder / f'{split}.csv'} ({len(rows)} rows)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    write(args.out, args.seed)
