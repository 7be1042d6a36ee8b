"""Sentiment: short movie reviews scored by a programmatic gold reward (the IMDb experiment in miniature).

The user asks for a review of a (made-up) film; the completion is a short review. The reviews in the
rows and the pretraining corpus come from a small grammar with a latent sentiment drawn per review,
so a model trained on them writes fluent reviews of every shade, and samples spread over [0, 1].

The gold reward (`gold`, the headline score) stands in for the sentiment classifier of seed 002: a
weighted word lexicon, negations that flip (and damp) the next few words, intensifiers and
diminishers that scale the next sentiment word, words after "but" counting more, and a sigmoid.
"""

from __future__ import annotations

import math
import random
import re

from posttrain.data.values import completion_text
from posttrain.tasks.base import Task, chat_row

# ---------------------------------------------------------------- the gold reward

POSITIVE = {
    "good": 1.0, "great": 2.0, "excellent": 2.5, "wonderful": 2.2, "brilliant": 2.5, "superb": 2.5,
    "beautiful": 1.8, "charming": 1.5, "delightful": 2.0, "moving": 1.5, "funny": 1.2, "fun": 1.2,
    "clever": 1.5, "gripping": 1.8, "stunning": 2.2, "fresh": 1.0, "memorable": 1.5, "enjoyable": 1.5,
    "entertaining": 1.5, "touching": 1.5, "masterpiece": 3.0, "gem": 2.2, "loved": 2.0, "love": 2.0,
    "enjoyed": 1.5, "liked": 1.0, "admired": 1.5, "recommend": 1.5, "best": 2.0, "solid": 1.0,
    "strong": 1.0, "warm": 1.0, "perfect": 2.5, "fantastic": 2.5, "amazing": 2.5, "impressive": 1.8,
    "smart": 1.2, "lovely": 1.8, "powerful": 1.8, "engaging": 1.5, "worth": 1.2, "satisfying": 1.5,
    "joy": 2.0, "treat": 1.5,
}
NEGATIVE = {
    "bad": 1.5, "terrible": 2.5, "awful": 2.5, "boring": 2.0, "dull": 1.8, "weak": 1.2, "poor": 1.5,
    "mess": 2.0, "disaster": 2.5, "predictable": 1.2, "forgettable": 1.5, "clumsy": 1.5, "flat": 1.2,
    "tedious": 2.0, "slow": 0.8, "silly": 1.0, "painful": 2.0, "hated": 2.5, "disliked": 1.5,
    "disappointing": 2.0, "disappointed": 2.0, "worst": 3.0, "waste": 2.5, "bland": 1.5, "messy": 1.5,
    "annoying": 1.8, "lifeless": 2.0, "confusing": 1.2, "overlong": 1.2, "cheap": 1.2, "regret": 2.0,
    "stiff": 1.2, "shallow": 1.5, "chore": 1.5, "hard": 0.5, "pointless": 2.0, "wooden": 1.5, "dreadful": 2.5, "unwatchable": 3.0,
}
LEXICON = {**POSITIVE, **{w: -v for w, v in NEGATIVE.items()}}
NEGATIONS = {"not", "no", "never", "hardly", "nothing", "neither", "nor", "cannot", "without"}
INTENSIFIERS = {"very": 1.5, "really": 1.5, "extremely": 1.8, "incredibly": 1.8, "truly": 1.5, "so": 1.3,
                "absolutely": 1.8, "utterly": 1.8, "deeply": 1.5, "genuinely": 1.4, "remarkably": 1.6}
DIMINISHERS = {"somewhat": 0.5, "slightly": 0.4, "fairly": 0.7, "rather": 0.7, "mostly": 0.8, "quite": 0.9}
NEGATION_SCOPE = 3  # words after a negation whose polarity flips
NEGATED_WEIGHT = -0.7  # "not good" is milder than "bad"
BUT_WEIGHT = 1.5  # the clause after "but" dominates
SIGMOID_SCALE = 0.6

_WORD = re.compile(r"[a-z]+n't|[a-z]+|[.!?;]")


def sentiment_score(text: str) -> float:
    """The raw lexicon score of a text (positive is favourable); `gold_reward` squashes it."""
    total = 0.0
    negate_left, scale, clause_weight = 0, 1.0, 1.0
    for token in _WORD.findall(text.lower().replace("\u2019", "'")):
        if token in ".!?;":
            negate_left, scale, clause_weight = 0, 1.0, 1.0
            continue
        if token in NEGATIONS or token.endswith("n't"):
            negate_left = NEGATION_SCOPE
            continue
        if token == "but":
            clause_weight, negate_left = BUT_WEIGHT, 0
            continue
        if token in INTENSIFIERS or token in DIMINISHERS:
            scale *= INTENSIFIERS.get(token, 1.0) * DIMINISHERS.get(token, 1.0)
            continue
        value = LEXICON.get(token)
        if value is not None:
            if negate_left > 0:
                value *= NEGATED_WEIGHT
            total += value * scale * clause_weight
            scale = 1.0
        if negate_left > 0:
            negate_left -= 1
    return total


def gold_reward(prompts, completions, **columns) -> list[float]:
    """sigmoid(0.6 * lexicon score) in [0, 1] for each completion (TRL reward-function convention)."""
    return [1.0 / (1.0 + math.exp(-SIGMOID_SCALE * sentiment_score(completion_text(c)))) for c in completions]


gold_reward.reward_range = (0.0, 1.0)  # declared: the reward-hacking diagnostics read it


# ---------------------------------------------------------------- the review grammar

TITLE_ADJ = ("Silent", "Last", "Hidden", "Northern", "Crimson", "Distant", "Golden", "Secret", "Winter",
             "Midnight", "Paper", "Iron", "Glass", "Quiet", "Burning", "Frozen", "Silver", "Endless",
             "Wild", "Lost", "Seventh", "Forgotten", "Electric", "Hollow", "Sleeping", "Falling",
             "Velvet", "Copper", "Scarlet", "Summer")
TITLE_NOUN = ("Harbor", "Garden", "River", "Station", "Mountain", "Letter", "Orchard", "Lighthouse",
              "Carnival", "Bridge", "Kingdom", "Detective", "Island", "Forest", "Machine", "Circus",
              "Hotel", "Signal", "Road", "Voyage", "Witness", "Empire", "Tower", "Dancer", "Stranger",
              "Promise", "Valley", "Engine", "Mirror", "Lantern", "Shadow", "Train", "Painter", "Choir",
              "Desert", "Kitchen", "Museum", "Planet", "Winter", "Harvest")
PLACES = ("Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Vienna", "Havana", "Mumbai", "Dublin",
          "Seoul", "Naples", "Berlin", "Quebec", "Istanbul")
NAMES = ("Anna", "Marco", "Kenji", "Lucia", "Omar", "Greta", "Tomas", "Amara", "Felix", "Ingrid",
         "Ravi", "Sofia", "Hugo", "Maya", "Pavel", "Nadia", "Leo", "Clara", "Ibrahim", "Elena")
GENRES = ("drama", "comedy", "thriller", "romance", "mystery", "western", "musical", "science fiction film",
          "war film", "family film", "horror film", "road movie", "crime story", "documentary")
PREMISES = ("a detective who cannot sleep", "two sisters who run a bakery", "a pilot lost over the sea",
            "a boy and his grandfather", "a band on its final tour", "a chef who loses her sense of taste",
            "a town that waits for a train", "an old thief and one last job", "a teacher in a mountain village",
            "a robot that wants to paint", "a family reunion gone wrong", "a spy who falls in love",
            "a small newspaper fighting a big company", "a journey across the desert",
            "a widow who opens a hotel", "a chess player and her rival", "twins separated at birth",
            "a lighthouse keeper and a stranger", "a young doctor in a busy hospital", "a failed magician")
ASPECTS = ("acting", "story", "plot", "dialogue", "soundtrack", "camera work", "pacing", "ending",
           "script", "cast", "direction", "music", "characters", "humor", "score", "editing", "lead actor",
           "final scene", "first half", "villain")
POS_ADJ = ("good", "great", "excellent", "wonderful", "brilliant", "superb", "beautiful", "charming",
           "delightful", "moving", "funny", "clever", "gripping", "stunning", "fresh", "memorable",
           "enjoyable", "touching", "solid", "strong", "perfect", "impressive", "lovely", "powerful", "engaging")
NEG_ADJ = ("bad", "terrible", "awful", "boring", "dull", "weak", "poor", "predictable", "forgettable",
           "clumsy", "flat", "tedious", "slow", "silly", "painful", "disappointing", "bland", "messy",
           "annoying", "lifeless", "confusing", "overlong", "stiff", "shallow", "wooden", "dreadful")
POS_VERB = ("loved", "enjoyed", "liked", "admired")
NEG_VERB = ("hated", "disliked")
POS_NOUN = ("masterpiece", "gem", "joy to watch", "real treat")
NEG_NOUN = ("mess", "disaster", "waste of time", "chore to sit through")
INTENS = ("very", "really", "extremely", "incredibly", "truly", "absolutely", "genuinely", "remarkably")
DIMIN = ("somewhat", "slightly", "fairly", "rather", "mostly")
FILM = ("film", "movie", "picture", "story")
NEUTRAL = ("I saw it on a rainy {day} with a friend.", "It runs for almost two hours.",
           "The {aspect} reminded me of older films.", "It was shot in {place}.",
           "I went in knowing nothing about it.", "The cast includes {name} and {name2}.",
           "The {aspect} takes a while to get going.", "My {relative} picked it for movie night.")
DAYS = ("Sunday", "Monday", "Friday", "Saturday", "evening", "afternoon")
RELATIVES = ("sister", "brother", "father", "mother", "partner", "friend", "grandmother")


def make_title(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return f"The {rng.choice(TITLE_ADJ)} {rng.choice(TITLE_NOUN)}"
    if form == 1:
        return f"The {rng.choice(TITLE_NOUN)} of {rng.choice(TITLE_ADJ)} {rng.choice(TITLE_NOUN)}s"
    if form == 2:
        return f"A {rng.choice(TITLE_NOUN)} in {rng.choice(PLACES)}"
    return f"{rng.choice(NAMES)}'s {rng.choice(TITLE_NOUN)}"


def _adj(rng: random.Random, positive: bool) -> str:
    word = rng.choice(POS_ADJ if positive else NEG_ADJ)
    r = rng.random()
    if r < 0.3:
        return f"{rng.choice(INTENS)} {word}"
    if r < 0.4:
        return f"{rng.choice(DIMIN)} {word}"
    return word


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _opinion(rng: random.Random, positive: bool) -> str:
    """One sentence that leans positive or negative, sometimes by negating the opposite."""
    aspect = rng.choice(ASPECTS)
    was = rng.choice(("was", "is", "felt", "seemed"))
    form = rng.randrange(8)
    if form == 0:
        return f"The {aspect} {was} {_adj(rng, positive)}."
    if form == 1:
        neg = rng.choice(("not", "never")) if was in ("was", "is") else "not"
        verb = {"felt": "did not feel", "seemed": "did not seem"}.get(was, f"{was} {neg}")
        return f"The {aspect} {verb} {rng.choice(NEG_ADJ if positive else POS_ADJ)}."
    if form == 2:
        if positive or rng.random() < 0.5:
            return f"I {rng.choice(POS_VERB if positive else NEG_VERB)} the {aspect}."
        return f"I did not {rng.choice(('enjoy', 'like', 'love'))} the {aspect}."
    if form == 3:
        return f"It is {_article(_adj(rng, positive))} {rng.choice(FILM)}."
    if form == 4:
        return f"{rng.choice(NAMES)} gives {_article(_adj(rng, positive))} performance as the {rng.choice(('lead', 'villain', 'mother', 'detective', 'captain', 'stranger'))}."
    if form == 5:
        other = rng.choice([a for a in ASPECTS if a != aspect])
        return f"The {other} {was} {_adj(rng, not positive)}, but the {aspect} {was} {_adj(rng, positive)}."
    if form == 6:
        noun = rng.choice(POS_NOUN if positive else NEG_NOUN)
        return f"{rng.choice(('Honestly', 'Simply put', 'In short', 'Frankly'))}, it is {_article(noun)}."
    if positive:
        return f"The {aspect} alone makes it {rng.choice(('worth watching', 'a joy', 'a treat'))}."
    return f"The {aspect} made it {rng.choice(('painful', 'tedious', 'hard'))} to sit through."


def _closing(rng: random.Random, positive: bool) -> str:
    form = rng.randrange(4)
    if form == 0:
        if positive:
            return f"I would {rng.choice(('', 'really ', 'definitely ', 'happily '))}recommend it."
        return f"I would {rng.choice(('not', 'never'))} recommend it."
    if form == 1:
        return f"Overall, {_article(_adj(rng, positive))} {rng.choice(FILM)}."
    if form == 2:
        return "It is worth seeing." if positive else "It is not worth your time."
    return f"{rng.randint(6, 10) if positive else rng.randint(1, 4)} out of 10."


def _fill(rng: random.Random, template: str) -> str:
    name, name2 = rng.sample(NAMES, 2)
    return template.format(day=rng.choice(DAYS), aspect=rng.choice(ASPECTS), place=rng.choice(PLACES),
                           name=name, name2=name2, relative=rng.choice(RELATIVES))


def write_review(rng: random.Random, title: str, lean: float | None = None) -> str:
    """A review of `title`; `lean` in [-1, 1] (drawn when None) is the chance-weighted sentiment."""
    lean = rng.uniform(-1, 1) if lean is None else lean
    p_positive = (1 + lean) / 2
    opener = rng.randrange(3)
    if opener == 0:
        sentences = [f"{title} is {_article(rng.choice(GENRES))} about {rng.choice(PREMISES)}."]
    elif opener == 1:
        sentences = [f"I watched {title} last {rng.choice(DAYS)}."]
    else:
        sentences = [f"This {rng.choice(GENRES)} follows {rng.choice(PREMISES)}."]
    for _ in range(rng.randint(2, 3)):
        if rng.random() < 0.15:
            sentences.append(_fill(rng, rng.choice(NEUTRAL)))
        else:
            sentences.append(_opinion(rng, rng.random() < p_positive))
    sentences.append(_closing(rng, rng.random() < p_positive))
    return " ".join(sentences)


def review_prompt(title: str) -> str:
    return f'Write a short review of the movie "{title}".'


def make_example(rng: random.Random) -> tuple[str, dict]:
    title = make_title(rng)
    return title, chat_row(review_prompt(title), write_review(rng, title), title=title)


TASK = Task(
    name="sentiment",
    make_example=make_example,
    scorers={"gold": gold_reward},
    headline="gold",
    default_max_new_tokens=96,
    description="Short movie reviews; gold reward = lexicon-and-negation sentiment in [0, 1].",
)
