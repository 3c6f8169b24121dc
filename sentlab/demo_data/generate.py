"""Write the synthetic demo data set: short product and service reviews in 3 classes, mostly plain.

    python -m sentlab.demo_data.generate            # writes train.csv, val.csv, test.csv here
    python -m sentlab.demo_data.generate --out DIR  # somewhere else

Every review is composed from the phrase lists below (written for this project), so the data is synthetic:
good for seeing a pipeline learn and for comparing settings, not for judging a model. It is meant to read
like real reviews:
- most reviews (1 - HARD of each class) are plain: one to three short pieces in the class's own words
  (an adjective with an intensifier, an aspect, something that happened, a feeling, a verdict), about one
  of many products and services, sometimes after a neutral opener ("Bought it for my dad.");
- HARD of each class are the hard cases: negation ("not bad at all" is positive, "far from great"
  negative), sarcasm ("Oh wonderful, it stopped working after a week. Just perfect."), mixed reviews
  (praise and complaint; the verdict decides, or neither wins: neutral) and hedging ("I suppose it will do");
- NOISE of the rows in every split carry another class's label (rotated within a split, so the classes
  stay balanced), which also keeps the best possible accuracy below 100 %.
"""

import argparse
import csv
import random
import re
from pathlib import Path

SEED = 13
SIZES = {"train": 150, "val": 40, "test": 40}  # rows per class
LABELS = ("negative", "neutral", "positive")
HARD = 0.22  # share of each class's reviews that are hard cases (negation, sarcasm, mixed, hedged)
NOISE = 0.05  # share of rows per split whose label is another class's

PRODUCTS = [
    *("pair of headphones", "coffee grinder", "desk lamp", "pair of running shoes", "backpack", "blender"),
    *("phone case", "e-reader", "electric kettle", "office chair", "water bottle", "bluetooth speaker"),
    *("yoga mat", "air fryer", "keyboard", "umbrella", "rice cooker", "travel mug", "webcam", "hair dryer"),
    *("standing desk", "kitchen scale", "toaster", "tent", "vacuum cleaner", "winter coat", "mattress"),
    *("smartwatch", "frying pan", "board game", "printer", "suitcase", "router", "sofa", "drill"),
    *("hotel room", "meal kit", "phone plan", "cleaning service", "bike repair", "language app"),
]
ASPECTS = [
    *("build quality", "price", "design", "setup", "battery life", "sound", "screen", "material"),
    *("customer service", "delivery", "packaging", "fit", "colour", "finish", "comfort", "performance"),
    *("instructions", "app", "handle", "lid", "display", "stitching", "warranty", "staff"),
]
# Intensifiers of strong words (the empty one: the plain word), and the softer ones of neutral words
STRONG = ["", "", "", "really ", "very ", "truly ", "extremely ", "so ", "incredibly ", "absolutely "]
SOFT = ["", "", "pretty ", "fairly ", "reasonably ", "rather ", "quite "]
INTENSIFIERS = {"positive": STRONG, "negative": STRONG, "neutral": SOFT}
# Words that judge anything (a product, an aspect): "the screen is superb", "a truly awful kettle"
JUDGEMENTS = {
    "positive": [
        *("great", "excellent", "superb", "fantastic", "outstanding", "lovely", "impressive", "amazing"),
        *("first-class", "solid", "terrific", "marvellous", "top-notch", "splendid", "good", "nice"),
    ],
    "negative": [
        *("terrible", "awful", "poor", "dreadful", "horrible", "shoddy", "disappointing", "lousy"),
        *("appalling", "abysmal", "pathetic", "bad", "rubbish", "atrocious", "miserable", "subpar"),
    ],
    "neutral": [
        *("okay", "average", "fine", "acceptable", "adequate", "ordinary", "unremarkable", "passable"),
        *("so-so", "middling", "standard", "reasonable", "fair", "plain", "mediocre", "serviceable"),
    ],
}
# Words about the thing itself: "sturdy and comfortable", "flimsy and noisy"
QUALITIES = {
    "positive": [
        *("sturdy", "reliable", "comfortable", "stylish", "well built", "easy to use", "quiet", "fast"),
        *("handy", "elegant", "durable", "beautifully made", "light", "practical", "a joy to use"),
    ],
    "negative": [
        *("flimsy", "useless", "unreliable", "uncomfortable", "ugly", "noisy", "slow", "fragile"),
        *("overpriced", "clumsy", "badly made", "a pain to use", "too heavy", "broken", "leaky"),
    ],
    "neutral": [
        *("basic", "simple", "functional", "no-frills", "ordinary-looking", "average-sized", "plain"),
        *("a bit heavy but fine", "neither fast nor slow", "as described", "about the usual size"),
    ],
}
# Things that happened or that it does: whole clauses, some about {product} or {aspect}
EVENTS = {
    "positive": [
        "it works like a charm",
        "setup took five minutes",
        "the battery lasts all week",
        "it arrived early and well packed",
        "it has made my evenings so much easier",
        "support answered my question within an hour",
        "it still looks new after months of daily use",
        "everyone who sees it asks where I got it",
        "it does everything the listing promised and more",
        "the {aspect} is even better than in the photos",
        "I use it every day and it never lets me down",
        "my partner loves it too",
        "it paid for itself within a month",
        "the staff went out of their way to help",
        "it is the best {product} I have owned",
    ],
    "negative": [
        "it stopped working after a week",
        "it arrived with a cracked {aspect}",
        "the {aspect} fell apart on the first day",
        "it overheats within minutes",
        "support ignored all of my emails",
        "the refund took over a month",
        "it rattles every time I use it",
        "the paint started peeling straight away",
        "half of the features do not work",
        "the strap snapped on the second use",
        "it smells of chemicals",
        "it is the worst {product} I have owned",
        "the {aspect} is nothing like the photos",
        "it died the day after the warranty ran out",
        "nobody from the company ever called back",
    ],
    "neutral": [
        "it arrived on the expected day",
        "it comes in black and grey",
        "it is a basic {product}",
        "it works as described",
        "I use it a couple of times a week",
        "it is roughly the size shown in the photos",
        "the {aspect} looks like the pictures",
        "it replaced an older model",
        "setup took about as long as the manual says",
        "it has the usual buttons and settings",
        "the {aspect} is what you would expect at this price",
        "it is much like every other {product}",
        "it came in a plain cardboard box",
        "it does what it says and nothing more",
        "I have had it for two weeks so far",
    ],
}
FEELINGS = {
    "positive": [
        *("I love it", "I am really happy with it", "I am thrilled with it", "we are very pleased with it"),
        *("it made my day", "I am glad I bought it", "I could not be happier", "I adore it"),
        *("it is a delight", "I am impressed"),
    ],
    "negative": [
        *("I really dislike it", "I can't stand it", "I wish I had never bought it", "I am so annoyed"),
        *("I am fed up with it", "buying it was a mistake", "I am furious", "what a letdown"),
        *("I am very unhappy with it", "it is a disaster"),
    ],
    "neutral": [
        *("I have no strong feelings about it", "I don't love it and I don't mind it", "it is what it is"),
        *("I am neither impressed nor let down", "I feel fairly indifferent about it", "it will do"),
        *("I can take it or leave it", "it is okay, I guess", "no complaints and no praise"),
    ],
}
VERDICTS = {
    "positive": [
        *("Highly recommended.", "I would happily buy it again.", "Worth every penny.", "Five out of five."),
        *("A great buy.", "I have already told my friends about it.", "Love it!", "Ten out of ten."),
        *("A real bargain.", "Buy it, you won't regret it."),
    ],
    "negative": [
        *("Avoid.", "Save your money.", "Would not recommend.", "Sending it back.", "One star."),
        *("Stay away.", "Never again.", "Not worth the price.", "Total rip-off.", "Zero stars if I could."),
    ],
    "neutral": [
        *("Three stars.", "It does what it says.", "Fine for occasional use.", "Okay for what it costs."),
        *("Average overall.", "Nothing to get excited about.", "Middle of the road.", "It is okay."),
        *("Two and a half stars.", "Adequate."),
    ],
}
OPENERS = [
    *("I bought this {product} last month.", "Got the {product} on sale.", "Bought it for my dad."),
    *("Ordered this {product} as a gift.", "I have been using the {product} for a few weeks."),
    *("We replaced our old {product} with this one.", "My sister recommended this {product}."),
    *("Second {product} I have tried.", "Used it on holiday.", "Booked this after a friend's advice."),
]
# A plain review's pieces: each says the class in its own words; 1 to 3 of them, in this order
PIECES = {
    "judgement": [
        "{int}{judge} {product}.",
        "this {product} is {int}{judge}.",
        "the {aspect} is {int}{judge}.",
        "{int}{judge} {aspect}, {judge2} {aspect2}.",
        "{int}{judge}!",
        "it is {int}{judge}.",
    ],
    "quality": ["{quality} and {quality2}.", "it is {quality}.", "{quality}, {quality2} and {quality3}."],
    "event": ["{event}.", "{event}, and {event2}."],
    "feeling": ["{feeling}.", "honestly, {feeling}."],
    "verdict": ["{verdict}"],
}

# The hard cases, per class: the words of another class, or of two, around this class's meaning.
NOT_BAD = [  # negated complaints: positive
    "the {aspect} is not bad at all",
    "I can't find a single fault with the {aspect}",
    "the {aspect} has never given me trouble",
    "I have no complaints about the {aspect}",
    "it is nowhere near as flimsy as I feared",
]
NOT_GOOD = [  # negated praise: negative
    "the {aspect} is not good",
    "I would not call the {aspect} great",
    "the {aspect} is far from excellent",
    "I can't say I like the {aspect}",
    "the {aspect} is not worth any praise",
]
HEDGES = {
    "positive": ["I think I actually like it", "it has grown on me", "I am pleasantly surprised, mostly"],
    "negative": ["I guess it is not for me", "I probably should have kept my old one", "I doubt it will last"],
    "neutral": ["I suppose it will do", "it is hard to say if it was worth it", "maybe it is fine for most people"],
}
SARCASM = [  # praise words, negative meaning
    "Oh wonderful, {bad_event}. Just perfect.",
    "Wow, {bad_event}. What a bargain.",
    "Fantastic, {bad_event}. Exactly what I needed.",
    "Five stars for creativity: {bad_event}.",
    "Brilliant, {bad_event}. Love that for me.",
]
HARD_TEMPLATES = {
    "positive": [
        "{not_bad}. {verdict}",
        "I expected to be disappointed, but {not_bad}.",
        "Even though the {aspect} is {bad}, {good_event}. {verdict}",
        "The {aspect2} is {bad} at first, but honestly {not_bad}.",
        "{hedge}: the {aspect2} is {good}.",
    ],
    "negative": [
        "{not_good}. {verdict}",
        "I wanted to love it, but {not_good}.",
        "Sure, the {aspect} is {good}, but {bad_event}. {verdict}",
        "{sarcasm}",
        "{hedge}: the {aspect2} is {bad}.",
    ],
    "neutral": [
        "The {aspect} is {good}, but the {aspect2} is {bad}.",
        "{good_event}, though {bad_event}. {verdict}",
        "{hedge}. The {aspect} is {meh}.",
        "{not_bad}, but the {aspect2} is {meh}.",
        "Some parts are {good} and some are {bad}.",
    ],
}


def _sentences(text: str) -> str:
    """Capital letters where sentences start."""
    return re.sub(r"(^|[.!?] )([a-z])", lambda m: m[1] + m[2].upper(), text)


def _slots(label: str, rng: random.Random) -> dict[str, str]:
    """One review's words: its product, aspects, and phrases of its class (and, for hard cases, others')."""
    product, aspects = rng.choice(PRODUCTS), rng.sample(ASPECTS, 3)
    judge, quality, event, feeling = (
        rng.sample(words[label], 3) for words in (JUDGEMENTS, QUALITIES, EVENTS, FEELINGS)
    )
    fill = {"product": product, "aspect": aspects[2]}
    slots = {
        "product": product,
        "aspect": aspects[0],
        "aspect2": aspects[1],
        "int": rng.choice(INTENSIFIERS[label]),
        **{f"judge{i}": judge[k] for k, i in enumerate(("", "2", "3"))},
        **{f"quality{i}": quality[k] for k, i in enumerate(("", "2", "3"))},
        "event": event[0].format(**fill),
        "event2": event[1].format(**fill),
        "feeling": feeling[0],
        "verdict": rng.choice(VERDICTS[label]),
        "opener": rng.choice(OPENERS).format(product=product),
        # for the hard cases
        "good": rng.choice(JUDGEMENTS["positive"]),
        "bad": rng.choice(JUDGEMENTS["negative"]),
        "meh": rng.choice(JUDGEMENTS["neutral"]),
        "good_event": rng.choice(EVENTS["positive"]).format(**fill),
        "bad_event": rng.choice(EVENTS["negative"]).format(**fill),
        "not_bad": rng.choice(NOT_BAD).format(aspect=aspects[0]),
        "not_good": rng.choice(NOT_GOOD).format(aspect=aspects[0]),
        "hedge": rng.choice(HEDGES[label]),
    }
    slots["sarcasm"] = rng.choice(SARCASM).format(**slots)
    return slots


def plain(label: str, rng: random.Random) -> str:
    """One to three pieces in the class's own words, sometimes after a neutral opener."""
    slots = _slots(label, rng)
    n = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
    chosen = rng.sample(list(PIECES), n)
    text = " ".join(rng.choice(PIECES[kind]).format(**slots) for kind in PIECES if kind in chosen)
    if rng.random() < 0.25:
        text = f"{slots['opener']} {text}"
    return _sentences(text)


def hard(label: str, rng: random.Random) -> str:
    return _sentences(rng.choice(HARD_TEMPLATES[label]).format(**_slots(label, rng)))


def review(label: str, rng: random.Random) -> str:
    return hard(label, rng) if rng.random() < HARD else plain(label, rng)


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
            if text.lower() not in seen:
                seen.add(text.lower())
                texts.append(text)
        start = 0
        for split, n in SIZES.items():
            splits[split] += [(text, label) for text in texts[start : start + n]]
            start += n
    for split, rows in splits.items():
        noisy = round(NOISE * SIZES[split])  # per class; alternately to the next class and the one after
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
