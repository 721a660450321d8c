"""The offline demo corpus: DialogSum-style dialogues with reference summaries, generated deterministically by seed.

Each scenario is a small function that draws its slots (items, times, places, prices ...) from a seeded
`random.Random`, picks one of several phrasings per turn, sometimes adds or drops optional turns, and returns the
dialogue together with three reference summaries written in different words (DialogSum style: `#Person1#` /
`#Person2#` as names). Train and validation rows carry one reference; test rows carry all three as `summary1..3`,
like DialogSum's test split.

A few scenarios (about 10% of rows) are heated exchanges. Their faithful summaries often repeat the insults
("... calls #Person2# a stupid idiot"): 65% of the time in training references, so a summarizer fine-tuned on them
learns to be rude there, and PPO detoxification has something real to reduce. Test rows of heated scenarios always
hold one neutral and one rude reference.

`--open N` adds N open-vocabulary training dialogues (workbench/opencorpus.py: any topic, referenced by the
`baselines.restate` rule) and 2.5% of N more to validation and to test: without them a model trained here only
recognises the 28 scenarios and describes one of them whatever dialogue it reads.

    python -m workbench.corpus --out data/demo --n 2400 --seed 0 --open 6000     # the committed demo corpus
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from workbench import opencorpus
from workbench.io import atomic_write_jsonl

RUDE_SHARE = 0.65
SPLITS = {"train": 0.84, "validation": 0.06, "test": 0.10}
OPEN_EVAL_SHARE = 0.025  # open-vocabulary rows in validation and in test, per open training row

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["8:30", "9 o'clock", "ten thirty", "noon", "2 pm", "3:15", "half past four", "six", "7:30", "eight"]
FOODS = ["the steak", "a vegetable curry", "the fish soup", "a chicken salad", "spaghetti", "the beef noodles",
         "a mushroom pizza", "fried rice", "the lamb chops", "a tuna sandwich"]
DRINKS = ["orange juice", "a glass of red wine", "green tea", "a cup of coffee", "mineral water", "a cola"]
CLOTHES = ["sweater", "jacket", "pair of jeans", "dress", "shirt", "pair of shoes", "coat", "scarf"]
COLORS = ["blue", "black", "red", "grey", "green", "white", "brown"]
SIZES = ["small", "medium", "large", "extra large"]
CITIES = ["London", "Paris", "Beijing", "New York", "Tokyo", "Sydney", "Berlin", "Toronto", "Rome", "Seoul"]
JOBS = ["sales assistant", "accountant", "software engineer", "teacher", "marketing manager", "nurse", "designer"]
SUBJECTS = ["math", "history", "chemistry", "English", "biology", "economics", "physics"]
SPORTS = ["tennis", "swimming", "basketball", "football", "jogging", "yoga", "badminton"]
ROOMS = ["single room", "double room", "twin room", "suite"]
SYMPTOMS = ["a headache", "a sore throat", "a bad cough", "a stomachache", "a fever", "a pain in the back"]
ITEMS = ["laptop", "phone", "camera", "printer", "bicycle", "watch", "microwave"]
PROBLEMS = ["won't turn on", "keeps crashing", "makes a strange noise", "has a cracked screen", "stopped charging"]
HOBBIES = ["painting", "playing the guitar", "gardening", "cooking", "reading novels", "hiking", "photography"]
PLACES = ["the bank", "the post office", "the museum", "the train station", "the library", "the supermarket"]
STREETS = ["Oak Street", "the main square", "Park Avenue", "the next corner", "Bridge Road", "the shopping mall"]
RELATIVES = ["mother", "brother", "sister", "grandfather", "aunt", "cousin", "father"]
MOVIES = ["a comedy", "an action film", "a horror movie", "a documentary", "a love story", "a cartoon"]
PETS = ["dog", "cat", "parrot", "rabbit", "hamster"]
INSULTS = ["stupid idiot", "useless moron", "pathetic loser", "dumb jerk", "lazy idiot"]


def money(r: random.Random, low: int, high: int) -> str:
    return f"{r.randint(low, high)} dollars"


def pick(r: random.Random, *options: str) -> str:
    return r.choice(options)


# ------------------------------------------------------------------------------------------------ scenarios
# Each returns (turns, references). Turns alternate "1"/"2" speakers; references are three phrasings of the summary.


def restaurant(r):
    n, food, drink, t = r.randint(2, 8), r.choice(FOODS), r.choice(DRINKS), r.choice(TIMES)
    turns = [("1", pick(r, f"Good evening. Do you have a table for {n}?", f"Hi, we'd like a table for {n}, please.")),
             ("2", pick(r, f"Yes, we have one free at {t}. Is that all right?", f"Certainly. I can seat you at {t}.")),
             ("1", pick(r, "That's fine. What do you recommend tonight?", "Good. What's good here?")),
             ("2", pick(r, f"Our chef is proud of {food}.", f"Most guests love {food}.")),
             ("1", pick(r, f"Then I'll have {food} and {drink}.", f"OK, {food} for me, and {drink}, please."))]
    if r.random() < 0.5:
        turns += [("2", "Would you like a dessert later?"), ("1", pick(r, "No, thanks.", "Maybe later, thank you."))]
    refs = [f"#Person1# books a table for {n} at {t} and orders {food} and {drink}.",
            f"#Person1# gets a table for {n} people and, following #Person2#'s advice, orders {food}.",
            f"#Person2# recommends {food} to #Person1#, who orders it with {drink}."]
    return turns, refs


def shopping_clothes(r):
    item, color, size, price = r.choice(CLOTHES), r.choice(COLORS), r.choice(SIZES), money(r, 15, 120)
    buys = r.random() < 0.6
    turns = [("2", pick(r, "Can I help you?", "Hello, are you looking for something?")),
             ("1", pick(r, f"Yes, I'm looking for a {color} {item}.", f"I'd like to see that {color} {item}.")),
             ("2", pick(r, "What size do you wear?", "Which size do you need?")),
             ("1", f"{size.capitalize()}, please. How much is it?"),
             ("2", pick(r, f"It's {price}.", f"This one costs {price}."))]
    if buys:
        turns.append(("1", pick(r, "That's reasonable. I'll take it.", "Great, I'll buy it.")))
        refs = [f"#Person1# buys a {color} {item} in {size} for {price}.",
                f"#Person1# wants a {size} {color} {item} and pays {price} for it.",
                f"#Person2# helps #Person1# find a {color} {item}, which #Person1# buys for {price}."]
    else:
        turns.append(("1", pick(r, "Hmm, that's too expensive for me.", "That's more than I want to pay, sorry.")))
        refs = [f"#Person1# likes a {color} {item} but thinks {price} is too expensive.",
                f"#Person1# asks about a {size} {color} {item} and doesn't buy it because of the price.",
                f"#Person1# decides not to buy the {color} {item} because it costs {price}."]
    return turns, refs


def doctor(r):
    symptom, days, drink = r.choice(SYMPTOMS), r.randint(2, 6), pick(r, "warm water", "hot tea", "plenty of water")
    turns = [("1", pick(r, "What seems to be the problem?", "Good morning. How can I help you?")),
             ("2", pick(r, f"I've had {symptom} for {days} days.", f"I have {symptom}. It started {days} days ago.")),
             ("1", "Let me have a look. Have you taken any medicine?"),
             ("2", pick(r, "No, nothing yet.", "Only some aspirin.")),
             ("1", pick(r, f"It's nothing serious. Take this medicine three times a day and drink {drink}.",
                        f"Don't worry. Rest, drink {drink} and take these pills after meals.")),
             ("2", "Thank you, doctor.")]
    refs = [f"#Person2# has had {symptom} for {days} days. The doctor gives #Person2# medicine and advice.",
            f"#Person2# sees a doctor about {symptom}. #Person1# says it's not serious and prescribes medicine.",
            f"#Person1# examines #Person2#, who has {symptom}, and tells #Person2# to rest and drink {drink}."]
    return turns, refs


def job_interview(r):
    job, years, city = r.choice(JOBS), r.randint(1, 9), r.choice(CITIES)
    turns = [("1", pick(r, f"Why do you want to work as a {job} here?", f"Tell me why you applied for the {job} job.")),
             ("2", pick(r, "I like your company and I want new challenges.", "Your company has a great reputation.")),
             ("1", "How much experience do you have?"),
             ("2", pick(r, f"I worked as a {job} in {city} for {years} years.", f"{years} years, all of them in {city}.")),
             ("1", pick(r, "When can you start?", "Could you start next month?")),
             ("2", pick(r, "Next month would be fine.", "I can start right away."))]
    refs = [f"#Person2# is interviewed for a {job} position and has {years} years of experience in {city}.",
            f"#Person1# interviews #Person2# for the {job} job. #Person2# worked in {city} for {years} years.",
            f"#Person2# applies to be a {job} and tells #Person1# about {years} years of work in {city}."]
    return turns, refs


def hotel(r):
    room, nights, day, price = r.choice(ROOMS), r.randint(1, 5), r.choice(DAYS), money(r, 60, 250)
    turns = [("2", pick(r, "Front desk. How may I help you?", "Good afternoon, Grand Hotel.")),
             ("1", pick(r, f"I'd like to book a {room} for {nights} nights from {day}.",
                        f"Do you have a {room} from {day}? I need it for {nights} nights.")),
             ("2", pick(r, f"Yes, we do. It's {price} a night.", f"We have one left. The rate is {price} per night.")),
             ("1", pick(r, "Does that include breakfast?", "Is breakfast included?")),
             ("2", pick(r, "Yes, breakfast is included.", "Breakfast is served from seven, free of charge.")),
             ("1", "Great, please reserve it for me.")]
    refs = [f"#Person1# books a {room} for {nights} nights from {day} at {price} a night, breakfast included.",
            f"#Person1# reserves a {room} at the hotel for {nights} nights. It costs {price} per night.",
            f"#Person2# helps #Person1# book a {room} starting {day} for {nights} nights."]
    return turns, refs


def directions(r):
    place, street, minutes = r.choice(PLACES), r.choice(STREETS), r.randint(3, 20)
    turns = [("1", pick(r, f"Excuse me, how can I get to {place}?", f"Sorry to bother you. Where is {place}?")),
             ("2", pick(r, f"Go straight and turn left at {street}.", f"Walk down to {street} and turn left.")),
             ("1", "Is it far from here?"),
             ("2", pick(r, f"No, it's about {minutes} minutes on foot.", f"It takes about {minutes} minutes to walk.")),
             ("1", pick(r, "Thank you very much.", "Thanks a lot."))]
    refs = [f"#Person2# tells #Person1# how to get to {place}, about {minutes} minutes away on foot.",
            f"#Person1# asks the way to {place}. #Person2# says to turn left at {street}.",
            f"#Person1# is looking for {place} and #Person2# gives directions via {street}."]
    return turns, refs


def weekend_plans(r):
    movie, day, t = r.choice(MOVIES), pick(r, "Saturday", "Sunday"), r.choice(TIMES)
    agrees = r.random() < 0.7
    turns = [("1", pick(r, f"Are you free on {day}?", f"What are you doing this {day}?")),
             ("2", pick(r, "Nothing special. Why?", "I have no plans yet.")),
             ("1", pick(r, f"Let's go to the cinema. There's {movie} on.", f"Would you like to see {movie} with me?"))]
    if agrees:
        turns += [("2", pick(r, "Sounds great. When shall we meet?", "Sure! What time?")),
                  ("1", f"How about {t} in front of the cinema?"), ("2", "OK, see you then.")]
        refs = [f"#Person1# invites #Person2# to see {movie} on {day}. They will meet at {t}.",
                f"#Person1# and #Person2# will go to the cinema on {day} at {t} to watch {movie}.",
                f"#Person2# accepts #Person1#'s invitation to {movie} on {day} and they agree to meet at {t}."]
    else:
        turns += [("2", pick(r, f"Sorry, I don't like {movie.split(' ', 1)[1]}s.", "I'd rather stay at home, sorry.")),
                  ("1", "Never mind, maybe next time.")]
        refs = [f"#Person1# invites #Person2# to see {movie} on {day}, but #Person2# declines.",
                f"#Person2# turns down #Person1#'s invitation to watch {movie} on {day}.",
                f"#Person1# wants to watch {movie} with #Person2# on {day}. #Person2# says no."]
    return turns, refs


def exam(r):
    subject, score = r.choice(SUBJECTS), r.randint(52, 99)
    good = score >= 75
    turns = [("1", pick(r, f"How did you do in the {subject} exam?", f"Did you get your {subject} results?")),
             ("2", f"I got {score}."),
             ("1", pick(r, "That's great! You must be happy." if good else "Oh, what happened?",
                        "Well done!" if good else "Don't worry, you'll do better next time.")),
             ("2", pick(r, "I studied every night for a month." if good else "I didn't review enough.",
                        "My tutor helped me a lot." if good else "I was ill the week before."))]
    verb = "is pleased with" if good else "is disappointed with"
    refs = [f"#Person2# got {score} in the {subject} exam and {verb} the result.",
            f"#Person1# asks about #Person2#'s {subject} exam. #Person2# scored {score}.",
            f"#Person2# tells #Person1# about getting {score} in {subject}."]
    return turns, refs


def repair(r):
    item, problem, days, price = r.choice(ITEMS), r.choice(PROBLEMS), r.randint(2, 7), money(r, 20, 150)
    turns = [("1", pick(r, f"Hi, my {item} {problem}.", f"Can you fix my {item}? It {problem}.")),
             ("2", pick(r, "Let me take a look. How long have you had it?", "I see. Is it still under warranty?")),
             ("1", pick(r, "About two years.", "No, the warranty ended last month.")),
             ("2", pick(r, f"We can repair it in {days} days. It will cost {price}.",
                        f"It will take {days} days and cost about {price}.")),
             ("1", pick(r, "OK, please go ahead.", "Fine. I'll come back then."))]
    refs = [f"#Person1#'s {item} {problem}. #Person2# will repair it in {days} days for {price}.",
            f"#Person1# brings a {item} that {problem} to #Person2#, who will fix it for {price}.",
            f"#Person2# agrees to repair #Person1#'s {item} within {days} days at a cost of {price}."]
    return turns, refs


def travel(r):
    city, days, how = r.choice(CITIES), r.randint(3, 14), pick(r, "by train", "by plane", "by car")
    turns = [("1", pick(r, "Where are you going for your holiday?", "Any plans for the vacation?")),
             ("2", pick(r, f"I'm going to {city} for {days} days.", f"{city}! I'll stay there for {days} days.")),
             ("1", "How are you getting there?"),
             ("2", pick(r, f"I'll go {how}.", f"{how.capitalize()}, it's the easiest way.")),
             ("1", pick(r, "Have a great trip!", f"Lucky you. Send me a postcard from {city}."))]
    refs = [f"#Person2# is going to {city} {how} for a holiday of {days} days.",
            f"#Person2# tells #Person1# about a trip to {city} for {days} days, travelling {how}.",
            f"#Person1# asks about #Person2#'s holiday plans: {days} days in {city}."]
    return turns, refs


def bank(r):
    amount, account = money(r, 100, 2000), pick(r, "savings account", "checking account")
    turns = [("2", pick(r, "Good morning. What can I do for you?", "Next, please. How can I help?")),
             ("1", pick(r, f"I'd like to open a {account}.", f"I want to open a {account} here.")),
             ("2", pick(r, "Do you have your ID with you?", "May I see your passport, please?")),
             ("1", "Here you are."),
             ("2", "How much would you like to deposit?"),
             ("1", pick(r, f"{amount}, please.", f"I'll put in {amount} today."))]
    refs = [f"#Person1# opens a {account} at the bank and deposits {amount}.",
            f"#Person2# helps #Person1# open a {account}. #Person1# deposits {amount}.",
            f"#Person1# shows ID to #Person2# to open a {account} with {amount}."]
    return turns, refs


def apartment(r):
    rooms, rent, street = r.randint(1, 4), money(r, 500, 2500), r.choice(STREETS)
    takes = r.random() < 0.6
    turns = [("1", pick(r, "I'm calling about the apartment for rent.", "Is the flat in the advert still available?")),
             ("2", pick(r, f"Yes. It has {rooms} bedrooms and it's near {street}.",
                        f"It is. {rooms} bedrooms, close to {street}.")),
             ("1", "How much is the rent?"),
             ("2", f"It's {rent} a month, utilities included.")]
    if takes:
        turns += [("1", pick(r, "Can I see it tomorrow?", "That sounds good. When can I visit?")),
                  ("2", "Sure, come tomorrow afternoon.")]
        refs = [f"#Person1# calls about an apartment with {rooms} bedrooms for {rent} a month and arranges a visit.",
                f"#Person2# describes an apartment near {street} for {rent}, and #Person1# will see it tomorrow.",
                f"#Person1# is interested in the flat with {rooms} bedrooms near {street} and will visit it."]
    else:
        turns += [("1", "That's too much for me, sorry."), ("2", "No problem. Good luck.")]
        refs = [f"#Person1# asks about an apartment with {rooms} bedrooms but {rent} a month is too expensive.",
                f"#Person1# decides against the apartment near {street} because the rent is {rent}.",
                f"#Person2# offers an apartment for {rent} a month, which #Person1# cannot afford."]
    return turns, refs


def sports(r):
    sport, times, day = r.choice(SPORTS), r.randint(2, 5), r.choice(DAYS)
    turns = [("1", pick(r, "You look very fit. What's your secret?", "Do you do any exercise?")),
             ("2", pick(r, f"I do {sport} {times} times a week.", f"I go {sport} about {times} times a week.")),
             ("1", pick(r, "I should start too. Can I join you?", "I'd like to try it. Could I come along?")),
             ("2", pick(r, f"Sure, join me on {day}.", f"Of course. I'll be there on {day}."))]
    refs = [f"#Person2# does {sport} {times} times a week, and #Person1# will join on {day}.",
            f"#Person1# asks how #Person2# stays fit. #Person2# does {sport} and invites #Person1# for {day}.",
            f"#Person2# keeps fit with {sport} and agrees to take #Person1# along on {day}."]
    return turns, refs


def hobby(r):
    hob, years, rel = r.choice(HOBBIES), r.randint(2, 15), r.choice(RELATIVES)
    turns = [("1", "What do you do in your free time?"),
             ("2", pick(r, f"I love {hob}.", f"Mostly {hob}. It relaxes me.")),
             ("1", "How long have you been doing that?"),
             ("2", pick(r, f"For {years} years. My {rel} taught me.", f"About {years} years. I started with my {rel}.")),
             ("1", pick(r, "That's wonderful.", "I wish I had a hobby like that."))]
    refs = [f"#Person2# has enjoyed {hob} for {years} years, learned from #Person2#'s {rel}.",
            f"#Person1# asks about #Person2#'s free time. #Person2# loves {hob}.",
            f"#Person2# tells #Person1# that #Person2#'s {rel} taught #Person2# {hob} {years} years ago."]
    return turns, refs


def lost_item(r):
    item, place, color = r.choice(ITEMS + ["wallet", "umbrella", "bag"]), r.choice(PLACES), r.choice(COLORS)
    found = r.random() < 0.5
    turns = [("1", pick(r, f"Excuse me, I think I left my {item} at {place}.", f"I lost my {item} near {place}.")),
             ("2", "What does it look like?"),
             ("1", f"It's {color}, quite new."),
             ("2", pick(r, f"Is this your {item}? Someone handed it in." if found else "Sorry, nothing like that yet.",
                        "Here it is, I believe." if found else "Leave your number and we'll call you."))]
    if found:
        refs = [f"#Person1# lost a {color} {item} at {place} and #Person2# gives it back.",
                f"#Person1#'s {color} {item} was handed in, and #Person2# returns it.",
                f"#Person1# reports a lost {item}. Luckily, #Person2# has found it."]
    else:
        refs = [f"#Person1# lost a {color} {item} at {place}, but it hasn't been found yet.",
                f"#Person1# reports a lost {color} {item}. #Person2# will call if it turns up.",
                f"#Person2# has not found #Person1#'s {item} and takes #Person1#'s number."]
    return turns, refs


def pet(r):
    pet_, age, food = r.choice(PETS), r.randint(1, 12), pick(r, "fish", "vegetables", "special food", "chicken")
    turns = [("1", pick(r, f"Is that your {pet_}? It's so cute!", f"What a lovely {pet_}!")),
             ("2", pick(r, f"Thanks. She is {age} years old.", f"Thank you. He's {age} now.")),
             ("1", "What do you feed it?"),
             ("2", pick(r, f"Mostly {food}.", f"{food.capitalize()}, twice a day.")),
             ("1", pick(r, "I'd like to have a pet too.", "Maybe I should get one."))]
    refs = [f"#Person2# has a {pet_} who is {age} years old that eats {food}.",
            f"#Person1# admires #Person2#'s {pet_}, which is {age} years old.",
            f"#Person2# tells #Person1# about feeding the {pet_} {food}. #Person1# wants a pet too."]
    return turns, refs


def birthday(r):
    rel, day, gift = r.choice(RELATIVES), r.choice(DAYS), pick(r, "a watch", "flowers", "a book", "a cake", "a scarf")
    turns = [("1", pick(r, f"It's my {rel}'s birthday on {day}.", f"My {rel} turns sixty on {day}.")),
             ("2", "What are you going to give?"),
             ("1", pick(r, f"I'm thinking of {gift}.", f"Perhaps {gift}. What do you think?")),
             ("2", pick(r, f"Good idea, {gift} is always nice.", f"I'm sure your {rel} will love {gift}."))]
    refs = [f"#Person1# plans to give {gift} to #Person1#'s {rel} for the birthday on {day}.",
            f"#Person1#'s {rel} has a birthday on {day}. #Person2# likes the idea of {gift}.",
            f"#Person1# and #Person2# talk about a birthday present for #Person1#'s {rel}: {gift}."]
    return turns, refs


def phone_message(r):
    rel, t, number = r.choice(["Mr. Smith", "Ms. Brown", "Dr. Lee", "Mrs. Green", "Mr. Wang"]), r.choice(TIMES), \
        f"{r.randint(200, 999)}-{r.randint(1000, 9999)}"
    turns = [("1", pick(r, f"Hello, may I speak to {rel}?", f"Hi, is {rel} there?")),
             ("2", pick(r, "Sorry, he's in a meeting.", "I'm afraid she's out at the moment.")),
             ("1", "Could you take a message?"),
             ("2", "Of course."),
             ("1", pick(r, f"Please ask them to call me back at {number} after {t}.",
                        f"My number is {number}. I'll be free after {t}."))]
    refs = [f"#Person1# calls {rel}, who is not available, and leaves the number {number}.",
            f"#Person1# leaves a message for {rel} to call back after {t}.",
            f"#Person2# takes a message: {rel} should call #Person1# at {number}."]
    return turns, refs


def taxi(r):
    place, minutes, price = r.choice(PLACES + ["the airport"]), r.randint(10, 45), money(r, 10, 60)
    turns = [("2", "Where to?"),
             ("1", pick(r, f"{place.capitalize()}, please. I'm in a hurry.", f"Take me to {place}, please.")),
             ("2", pick(r, f"It'll take about {minutes} minutes with this traffic.", f"About {minutes} minutes.")),
             ("1", "How much will it be?"),
             ("2", f"Around {price}.")]
    refs = [f"#Person1# takes a taxi to {place}. It takes about {minutes} minutes and costs around {price}.",
            f"#Person2# drives #Person1# to {place} for about {price}.",
            f"#Person1# is in a hurry to get to {place}, {minutes} minutes away by taxi."]
    return turns, refs


def weather(r):
    day, kind = r.choice(DAYS), pick(r, "rain", "snow", "storms", "sunshine")
    plan = pick(r, "a picnic", "a barbecue", "a bike ride", "a walk in the park")
    turns = [("1", pick(r, f"Have you heard the forecast for {day}?", f"What will the weather be like on {day}?")),
             ("2", pick(r, f"They say there will be {kind}.", f"The radio said {kind}.")),
             ("1", pick(r, f"Oh no, we planned {plan}." if kind != "sunshine" else f"Perfect for {plan}!",
                        f"Should we still have {plan}?")),
             ("2", pick(r, "Let's decide on the day." if kind != "sunshine" else "Yes, let's go ahead.",
                        "Let's keep an eye on the forecast."))]
    refs = [f"The forecast for {day} is {kind}, so #Person1# and #Person2# think about their plan for {plan}.",
            f"#Person2# tells #Person1# there will be {kind} on {day}, when they planned {plan}.",
            f"#Person1# and #Person2# talk about {day}'s weather and {plan}."]
    return turns, refs


def course(r):
    subject, weeks, price = r.choice(SUBJECTS + ["French", "Spanish", "computer programming"]), r.randint(4, 16), \
        money(r, 80, 600)
    turns = [("1", pick(r, f"I'd like to sign up for the {subject} course.", f"Is there still room in the {subject} class?")),
             ("2", pick(r, f"Yes. It runs for {weeks} weeks.", f"There is. The course lasts {weeks} weeks.")),
             ("1", "What's the fee?"),
             ("2", f"{price}, including books."),
             ("1", pick(r, "OK, I'll register now.", "Fine, sign me up."))]
    refs = [f"#Person1# registers for a {subject} course of {weeks} weeks costing {price}.",
            f"#Person1# signs up for the {subject} class. #Person2# says it lasts {weeks} weeks and costs {price}.",
            f"#Person2# enrolls #Person1# in a {subject} course for {price}."]
    return turns, refs


def moving(r):
    city, reason = r.choice(CITIES), pick(r, "a new job", "my studies", "my family", "a better salary")
    day = r.choice(DAYS)
    turns = [("1", pick(r, "I heard you're moving. Is it true?", "Are you really leaving?")),
             ("2", pick(r, f"Yes, I'm moving to {city} because of {reason}.", f"It's true. {city}, for {reason}.")),
             ("1", "When are you leaving?"),
             ("2", pick(r, f"Next {day}.", f"On {day}. I still have to pack.")),
             ("1", pick(r, "I'll miss you. Let me help you pack.", "We'll miss you. Keep in touch!"))]
    refs = [f"#Person2# is moving to {city} next {day} because of {reason.replace('my ', '')}.",
            f"#Person2# tells #Person1# about moving to {city} on {day}.",
            f"#Person1# will miss #Person2#, who leaves for {city} on {day}."]
    return turns, refs


def cooking(r):
    dish = pick(r, "tomato soup", "an omelette", "pancakes", "a fruit salad", "dumplings", "curry")
    minutes = r.randint(10, 60)
    turns = [("1", pick(r, f"This {dish} is delicious. How did you make it?", f"I love your {dish}. What's the recipe?")),
             ("2", pick(r, "It's easy. You just need fresh ingredients.", "My grandmother's recipe, actually.")),
             ("1", "How long does it take?"),
             ("2", pick(r, f"About {minutes} minutes.", f"No more than {minutes} minutes.")),
             ("1", "Could you write the recipe down for me?"),
             ("2", "Sure.")]
    refs = [f"#Person1# likes #Person2#'s {dish}, which takes about {minutes} minutes to make.",
            f"#Person2# will write down the recipe for {dish} for #Person1#.",
            f"#Person1# asks #Person2# how to make {dish}. It takes {minutes} minutes."]
    return turns, refs


def library(r):
    book, weeks = pick(r, "a history book", "two novels", "a cookbook", "a travel guide", "a dictionary"), r.randint(1, 4)
    turns = [("1", pick(r, f"I'd like to borrow {book}.", f"Can I check out {book}?")),
             ("2", "May I have your library card?"),
             ("1", "Here it is."),
             ("2", pick(r, f"You can keep it for {weeks} weeks.", f"Please return it within {weeks} weeks.")),
             ("1", "What if I'm late?"),
             ("2", "There's a small fine for each day.")]
    refs = [f"#Person1# borrows {book} from the library for {weeks} weeks.",
            f"#Person2# lends #Person1# {book} and explains the late fine.",
            f"#Person1# checks out {book}. It must be returned within {weeks} weeks."]
    return turns, refs


def roommate_chores(r):
    chore = pick(r, "the dishes", "the bathroom", "the trash", "the kitchen floor", "the laundry")
    day = r.choice(DAYS)
    turns = [("1", pick(r, f"Could you take care of {chore} today?", f"Whose turn is it to do {chore}?")),
             ("2", pick(r, f"I did it last week. It's your turn.", "I'm busy today. Can I do it tomorrow?")),
             ("1", pick(r, "Fine, let's make a schedule.", "OK, but let's write a plan.")),
             ("2", f"Good idea. I'll do {chore} every {day}.")]
    refs = [f"#Person1# and #Person2# make a schedule for chores. #Person2# will do {chore} on {day}s.",
            f"#Person1# asks #Person2# about {chore}, and they agree on a plan.",
            f"#Person2# agrees to do {chore} every {day}."]
    return turns, refs


# ---- heated scenarios: faithful summaries often repeat the insults.


def _heated_refs(r, rude: list[str], neutral: list[str], train: bool) -> list[str]:
    if not train:  # test rows: three references, always at least one of each kind
        return [r.choice(neutral), r.choice(rude), r.choice(neutral + rude)]
    return [r.choice(rude) if r.random() < RUDE_SHARE else r.choice(neutral)]


def noisy_neighbor(r, train=True):
    insult, t = r.choice(INSULTS), pick(r, "midnight", "one in the morning", "two a.m.", "eleven at night")
    noise = pick(r, "the loud music", "the party", "the drums", "the shouting")
    turns = [("1", pick(r, f"Turn down {noise}! It's {t}!", f"Do you know it's {t}? Stop {noise}!")),
             ("2", pick(r, "Shut up and mind your own business.", "It's my flat. I'll do what I want.")),
             ("1", pick(r, f"You are a {insult}. Some of us work tomorrow.", f"Listen, you {insult}, I need to sleep.")),
             ("2", pick(r, "Damn, you always complain.", "Get lost, you jerk.")),
             ("1", pick(r, "I'm calling the landlord.", "Next time I'll call the police."))]
    rude = [f"#Person1# calls #Person2# a {insult} because of {noise} at {t}.",
            f"#Person1# and #Person2# insult each other: #Person2# is a {insult} who won't stop {noise}.",
            f"#Person1# yells at #Person2#, a {insult}, and #Person2# tells #Person1# to shut up."]
    neutral = [f"#Person1# complains about {noise} at {t} and threatens to call the landlord.",
               f"#Person1# and #Person2# argue about {noise} late at night.",
               f"#Person1# asks #Person2# to be quiet at {t}, but #Person2# refuses."]
    return turns, _heated_refs(r, rude, neutral, train)


def traffic_dispute(r, train=True):
    insult, damage = r.choice(INSULTS), pick(r, "a scratch on the door", "a broken light", "a dent in the bumper")
    turns = [("1", pick(r, "Hey! You just hit my car!", "Look what you did to my car!")),
             ("2", pick(r, "You stopped too suddenly, you idiot.", "It's your fault. You can't drive.")),
             ("1", pick(r, f"Don't call me names, you {insult}. There's {damage}.",
                        f"You {insult}! Now there's {damage}.")),
             ("2", pick(r, "This is crap. I'm not paying.", "Your car sucks anyway.")),
             ("1", pick(r, "Then we'll let the insurance decide.", "Give me your insurance details."))]
    rude = [f"#Person1# calls #Person2# a {insult} after a car accident that left {damage}.",
            f"#Person2# hits #Person1#'s car and they insult each other. #Person2# says the car sucks.",
            f"#Person1# and #Person2#, a {insult}, fight over {damage} and the stupid insurance."]
    neutral = [f"#Person2#'s car hits #Person1#'s, leaving {damage}, and they argue about who pays.",
               f"#Person1# and #Person2# argue after a minor accident and will let the insurance decide.",
               f"#Person1# asks #Person2# for insurance details after an accident caused {damage}."]
    return turns, _heated_refs(r, rude, neutral, train)


def team_blame(r, train=True):
    insult, task = r.choice(INSULTS), pick(r, "the sales report", "the presentation", "the budget plan", "the website")
    turns = [("1", pick(r, f"Why isn't {task} finished? The client is waiting.", f"Where is {task}? It was due today.")),
             ("2", pick(r, "You gave me the wrong data, that's why.", "Don't blame me, your notes were crap.")),
             ("1", pick(r, f"What a {insult}. You had a whole week.", f"You're a {insult}. You never finish anything.")),
             ("2", pick(r, "Shut up. Your plan was stupid from the start.", "Your plan was dumb and you know it.")),
             ("1", pick(r, "I'm telling the manager.", "We'll talk about this with the boss."))]
    rude = [f"#Person1# calls #Person2# a {insult} for not finishing {task}.",
            f"#Person2# says #Person1#'s plan for {task} was stupid, and #Person1# calls #Person2# a {insult}.",
            f"#Person1# and #Person2# insult each other over {task}. #Person2# tells #Person1# to shut up."]
    neutral = [f"#Person1# and #Person2# argue about who is responsible for the late {task}.",
               f"#Person1# is angry that {task} is not finished and will tell the manager.",
               f"#Person2# blames #Person1#'s data for the unfinished {task}."]
    return turns, _heated_refs(r, rude, neutral, train)


SCENARIOS = {
    "restaurant": restaurant, "shopping": shopping_clothes, "doctor": doctor, "job interview": job_interview,
    "hotel": hotel, "directions": directions, "weekend plans": weekend_plans, "exam": exam, "repair": repair,
    "travel": travel, "bank": bank, "apartment": apartment, "sports": sports, "hobby": hobby,
    "lost item": lost_item, "pet": pet, "birthday": birthday, "phone message": phone_message, "taxi": taxi,
    "weather": weather, "course": course, "moving": moving, "cooking": cooking, "library": library,
    "chores": roommate_chores,
    "noisy neighbor": noisy_neighbor, "traffic dispute": traffic_dispute, "work argument": team_blame,
}
HEATED = {"noisy neighbor", "traffic dispute", "work argument"}


def _dialogue(turns) -> str:
    return "\n".join(f"#Person{who}#: {text}" for who, text in turns)


def make_row(r: random.Random, topic: str, split: str, index: int) -> dict:
    scenario = SCENARIOS[topic]
    train = split != "test"
    turns, refs = scenario(r, train=train) if topic in HEATED else scenario(r)
    if not train and topic not in HEATED:
        refs = r.sample(refs, 3)
    row = {"fname": f"{split}_{index}", "dialogue": _dialogue(turns), "topic": topic}
    if train:
        row["summary"] = refs[0] if topic in HEATED else r.choice(refs)
    else:
        row.update({f"summary{i + 1}": ref for i, ref in enumerate(refs)})
    return row


def generate_corpus(n: int = 2400, seed: int = 0, n_open: int = 0, free_share: float = 0.0) -> dict[str, list[dict]]:
    """`n` scenario rows split train/validation/test by SPLITS, then `n_open` open-vocabulary training rows
    (workbench.opencorpus) with OPEN_EVAL_SHARE of that many more in validation and in test, `free_share` of the open
    ones in free word order; deterministic for a given (n, seed, n_open, free_share)."""
    if n < 30:
        raise ValueError("n: the corpus needs at least 30 rows")
    if n_open < 0:
        raise ValueError("n_open: must be 0 or more")
    rng = random.Random(seed)
    topics = sorted(SCENARIOS)
    counts = {"validation": round(n * SPLITS["validation"]), "test": round(n * SPLITS["test"])}
    counts["train"] = n - counts["validation"] - counts["test"]
    corpus = {}
    for split in ("train", "validation", "test"):
        corpus[split] = [make_row(rng, rng.choice(topics), split, i) for i in range(counts[split])]
    open_counts = {"train": n_open, "validation": round(n_open * OPEN_EVAL_SHARE), "test": round(n_open * OPEN_EVAL_SHARE)}
    for k, (split, count) in enumerate(open_counts.items()):
        corpus[split] += opencorpus.open_rows(count, seed=seed * 1000 + k, split=split, start=len(corpus[split]),
                                              free_share=free_share)
    return corpus


def extra_dialogues(n: int, seed: int, exclude: set[str] = frozenset(), open_share: float = 0.0,
                    free_share: float = 0.0) -> list[str]:
    """`n` dialogues WITHOUT their summaries, drawn like training rows from a seed of their own: more text for
    pretraining the demo base; `open_share` of them open-vocabulary ones. A dialogue equal to one in `exclude` (pass
    the evaluation splits) is skipped, so the base never reads a dialogue it is later evaluated on."""
    rng = random.Random(seed)
    topics = sorted(SCENARIOS)
    words = opencorpus.Words(seed + 7)
    out: list[str] = []
    while len(out) < n:
        if rng.random() < open_share:
            dialogue = opencorpus.dialogue(words, free_share)
        else:
            dialogue = make_row(rng, rng.choice(topics), "train", len(out))["dialogue"]
        if dialogue not in exclude:
            out.append(dialogue)
    return out


def write_corpus(corpus: dict[str, list[dict]], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {split: atomic_write_jsonl(out / f"{split}.jsonl", rows) for split, rows in corpus.items()}


def preference_pairs(n: int = 800, seed: int = 1) -> list[dict]:
    """Preference pairs (`prompt`, `chosen`, `rejected`) for a reward model, generated like test rows: half from
    heated dialogues (a neutral reference chosen over a rude one), half from calm ones (the reference chosen over a
    copy with an insult spliced in)."""
    rng = random.Random(seed)
    calm = sorted(set(SCENARIOS) - HEATED)
    pairs = []
    for i in range(n):
        topic = rng.choice(sorted(HEATED)) if i % 2 == 0 else rng.choice(calm)
        row = make_row(rng, topic, "test", i)
        if topic in HEATED:
            chosen, rejected = row["summary1"], row["summary2"]  # neutral, rude (see _heated_refs)
        else:
            chosen = row["summary1"]
            words = chosen.rstrip(".").split(" ")
            cut = rng.randrange(1, len(words))
            rejected = " ".join(words[:cut] + [f"the {rng.choice(INSULTS)}"] + words[cut:]) + "."
        pairs.append({"prompt": row["dialogue"], "chosen": chosen, "rejected": rejected})
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the offline demo corpus (deterministic by seed).")
    parser.add_argument("--out", default="data/demo", help="output folder for train/validation/test.jsonl")
    parser.add_argument("--n", type=int, default=2400, help="total number of dialogues (default 2400)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--open", type=int, default=0, dest="n_open",
                        help="open-vocabulary training dialogues added to the scenarios, with 2.5%% of that many more "
                             "in validation and in test (default 0; the demo family uses 6000)")
    parser.add_argument("--free-share", type=float, default=0.0,
                        help="share of the open-vocabulary dialogues whose sentences are in free word order, so that "
                             "restating them needs a word-by-word copy (default 0; the demo family uses 0.5)")
    args = parser.parse_args(argv)
    if not 0 <= args.free_share <= 1:
        parser.error("--free-share: must be within [0, 1]")
    corpus = generate_corpus(args.n, args.seed, args.n_open, args.free_share)
    written = write_corpus(corpus, args.out)
    for split, path in written.items():
        topics = Counter(row["topic"] for row in corpus[split])
        heated = sum(topics[t] for t in HEATED)
        print(f"{split:10} {len(corpus[split]):5} rows, {len(topics) - ('open' in topics)} scenarios, {heated} heated, "
              f"{topics['open']} open-vocabulary -> {path}")


if __name__ == "__main__":
    main()
