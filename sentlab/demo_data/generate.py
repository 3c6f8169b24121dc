"""Write the synthetic demo data set: short product reviews in 3 classes, hard enough to tell settings apart.

    python -m sentlab.demo_data.generate            # writes train.csv, val.csv, test.csv here
    python -m sentlab.demo_data.generate --out DIR  # somewhere else

Every review is composed from the phrase lists below (written for this project), so the data is
synthetic: good for seeing a pipeline learn and for comparing settings, not for judging a model.
What makes it hard:
- negation: "not bad at all" is positive, "I would not call the setup great" negative;
- sarcasm: praise words around a complaint ("Oh great, the zipper broke on day two. Just perfect.");
- mixed reviews: praise and complaint together; the closing verdict, or the weight of the two, decides;
- hedging: "I suppose the price is fine" is neutral, "I think I actually like it" positive;
- shared phrases: openers, aspects and some verdicts appear in every class;
- label noise: NOISE of the rows in every split carry another class's label (rotated within a split,
  so the classes stay balanced), which also keeps the best possible accuracy below 100 %.
"""

import argparse
import csv
import random
from pathlib import Path

SEED = 13
SIZES = {"train": 150, "val": 40, "test": 40}  # rows per class
LABELS = ("negative", "neutral", "positive")
NOISE = 0.1  # share of rows per split whose label is another class's

PRODUCTS = [
    "pair of wireless headphones",
    "coffee grinder",
    "desk lamp",
    "pair of running shoes",
    "backpack",
    "blender",
    "phone case",
    "e-reader",
    "electric kettle",
    "office chair",
    "water bottle",
    "bluetooth speaker",
    "yoga mat",
    "air fryer",
    "mechanical keyboard",
    "umbrella",
    "rice cooker",
    "travel mug",
    "webcam",
    "hair dryer",
    "standing desk",
    "kitchen scale",
    "toaster",
    "camping tent",
]
ASPECTS = [
    "build quality",
    "price",
    "design",
    "setup",
    "manual",
    "packaging",
    "delivery",
    "battery",
    "customer service",
    "size",
    "colour",
    "weight",
    "finish",
    "noise level",
    "zipper",
    "cable",
]
OPENERS = [
    "I bought this {product} last month.",
    "Got the {product} on sale.",
    "Ordered this {product} as a gift.",
    "I have been using the {product} for a few weeks.",
    "We replaced our old {product} with this one.",
    "Picked up this {product} after reading the reviews.",
    "My sister recommended this {product}.",
    "Second {product} I have owned.",
]
PRAISE = [
    "the {aspect} is excellent",
    "the {aspect} is better than I hoped",
    "I love the {aspect}",
    "the {aspect} is really impressive",
    "the {aspect} feels premium",
    "the {aspect} is great",
]
COMPLAINTS = [
    "the {aspect} is awful",
    "the {aspect} is a real disappointment",
    "I hate the {aspect}",
    "the {aspect} feels flimsy and cheap",
    "the {aspect} is far worse than advertised",
    "the {aspect} is poor",
]
SO_SO = [
    "the {aspect} is fine",
    "the {aspect} is average",
    "the {aspect} is about what you would expect",
    "the {aspect} is acceptable",
    "the {aspect} is unremarkable",
    "the {aspect} is okay I guess",
]
# Praise and complaint said through a negation: the polarity of the words is the opposite of the meaning.
NEGATED_PRAISE = [  # sound negative, mean positive
    "the {aspect} is not bad at all",
    "I can't complain about the {aspect}",
    "the {aspect} never lets me down",
    "I have no problem with the {aspect}",
    "the {aspect} is not disappointing in the slightest",
]
NEGATED_COMPLAINT = [  # sound positive, mean negative
    "the {aspect} is not good",
    "I would not call the {aspect} great",
    "the {aspect} is nowhere near excellent",
    "I can't say I love the {aspect}",
    "the {aspect} is not worth praising",
]
HEDGES = {
    "positive": ["I think I actually like it", "it has grown on me", "I am pleasantly surprised, mostly"],
    "negative": ["I guess it is not for me", "I probably should have kept my old one", "I doubt it will last"],
    "neutral": ["I suppose it is alright", "it is hard to say if it was worth it", "maybe it is fine for most people"],
}
SARCASM = [  # praise words, negative meaning
    "Oh great, {bad}. Just perfect.",
    "Wow, {bad}. What a bargain.",
    "Fantastic, {bad}. Exactly what I needed.",
    "Five stars for creativity: {bad}.",
    "Brilliant, {bad}. Love that for me.",
]
VERDICTS = {
    "positive": [
        "Highly recommended.",
        "I would buy it again.",
        "Worth the money.",
        "Happy with it.",
        "Pretty good overall.",
    ],
    "negative": [
        "I am sending it back.",
        "Save your money.",
        "Would not recommend.",
        "Not worth it.",
        "Pretty bad overall.",
    ],
    "neutral": [
        "It does the job.",
        "Not great, not terrible.",
        "It is okay for the price.",
        "Three stars.",
        "I have mixed feelings about it.",
    ],
}
SHARED_VERDICTS = ["We will see how it holds up.", "Arrived on time.", "Took a while to get used to it."]
# {good}, {bad}, {meh}, {nice} (negated praise: positive), {nasty} (negated complaint: negative), and
# {good2}, ...: phrases about one aspect each; {verdict}, {hedge}: the class's own; {any}: a shared verdict.
TEMPLATES = {
    "positive": [
        "{opener} {Good}. {verdict}",
        "Even though {bad}, {good} and {good2}. {verdict}",
        "{Nice}, and {nice2}. {any}",
        "{Bad} at first, but honestly {nice}. {verdict}",
        "{Hedge}: {good}. {any}",
        "{opener} {Meh}, but {good} and {good2}.",
        "{Nice}. {Good}.",
        "I expected to hate it. {Nice}.",
        "I was ready to send it back, but {nice}. {any}",
    ],
    "negative": [
        "{opener} {Bad}. {verdict}",
        "Sure, {good}, but {bad} and {bad2}. {verdict}",
        "{Nasty}, and {nasty2}. {any}",
        "{sarcasm}",
        "{opener} {sarcasm}",
        "{Hedge}: {bad}. {any}",
        "{Meh}, but {nasty}. {verdict}",
        "I wanted to love it. {Nasty}.",
        "It looked excellent in the photos. {Bad}. {any}",
    ],
    "neutral": [
        "{opener} {Meh}. {verdict}",
        "{Good}, but {bad}. {verdict}",
        "{Hedge}. {Meh}, and {meh2}.",
        "{Nice}, though {meh}. {any}",
        "{opener} {Meh}. {Good}, though {bad}.",
        "{Hedge}; {good}, but {nasty}.",
        "{Meh}. {any}",
        "I wanted to love it, and {meh}. {any}",
        "It looked excellent in the photos; {meh}.",
    ],
}


def review(label: str, rng: random.Random) -> str:
    product = rng.choice(PRODUCTS)
    aspects = iter(rng.sample(ASPECTS, 10))  # a different aspect in every phrase of one review

    def two(phrases):  # two different phrases, each about its own aspect
        return [phrase.format(aspect=next(aspects)) for phrase in rng.sample(phrases, 2)]

    good, good2 = two(PRAISE)
    bad, bad2 = two(COMPLAINTS)
    meh, meh2 = two(SO_SO)
    nice, nice2 = two(NEGATED_PRAISE)
    nasty, nasty2 = two(NEGATED_COMPLAINT)
    slots = {
        "product": product,
        "opener": rng.choice(OPENERS).format(product=product),
        "verdict": rng.choice(VERDICTS[label]),
        "any": rng.choice(SHARED_VERDICTS),
        "hedge": rng.choice(HEDGES[label]),
        "sarcasm": rng.choice(SARCASM).format(bad=bad),
        "good": good,
        "good2": good2,
        "bad": bad,
        "bad2": bad2,
        "meh": meh,
        "meh2": meh2,
        "nice": nice,
        "nice2": nice2,
        "nasty": nasty,
        "nasty2": nasty2,
    }
    # {Good} is {good} with a capital first letter, for the start of a sentence
    slots.update({key.capitalize(): value[0].upper() + value[1:] for key, value in list(slots.items())})
    return rng.choice(TEMPLATES[label]).format(**slots)


def make_splits(seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """{split: [(text, label), ...]}: balanced classes, every text unique across all splits, NOISE of the
    labels rotated to another class (the same number from each class, so the balance holds)."""
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
            splits[split] += [(text, label) for text in texts[start : start + n]]
            start += n
    for split, rows in splits.items():
        noisy = round(NOISE * SIZES[split])  # per class; half go to the next class, half to the one after
        picks = {label: rng.sample([j for j, row in enumerate(rows) if row[1] == label], noisy) for label in LABELS}
        for i, label in enumerate(LABELS):
            for k, j in enumerate(picks[label]):
                rows[j] = (rows[j][0], LABELS[(i + 1 + k % 2) % len(LABELS)])
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
