"""The hand-written texts of `mbc demo`'s bundled stream (used by make_demo_assets.py): news items,
feed items and malformed raw events."""

from __future__ import annotations

import json

# Hand-written news items about fictional places and firms. The tiny model was trained on
# synthetic biographies only: these are stored in memory like everything else, but it cannot
# answer questions about them.
NEWS = [
    (
        "wire-1001",
        "Port of Valdria reopens",
        "The port of Valdria reopened on Monday after the storm. "
        "Officials said the first ships would dock before noon and the ferry to Tarn would run again.",
    ),
    (
        "wire-1002",
        "Orlen Mining output",
        "Orlen Mining reported quarterly output of 4.2 million tonnes of "
        "copper, slightly above its own forecast. The company kept its outlook for the year.",
    ),
    (
        "wire-1003",
        "Kessa Air adds routes",
        "Kessa Air will add three routes from its Tarn hub next spring, "
        "to Valdria, Morrow and Eastfield. Tickets go on sale in January.",
    ),
    (
        "wire-1004",
        "Eastfield council vote",
        "The Eastfield council voted to build a new library near the "
        "river. Work starts in March and the building should open the following year.",
    ),
    (
        "wire-1005",
        "Morrow rail strike ends",
        "Rail workers in Morrow ended their strike after a pay deal "
        "was agreed overnight. Trains were expected to run normally by Wednesday.",
    ),
    (
        "wire-1006",
        "Tarn market prices",
        "Prices at the Tarn market stayed the same this week. Traders said "
        "apples and potatoes sold well despite the cold weather.",
    ),
]
FEED = [
    (
        "valdria-weather-0417",
        "Storm warning lifted in Valdria",
        "<p>The weather office <b>lifted</b> its storm warning for the Valdria coast on Tuesday.</p>"
        "<p>Fishing boats may leave the harbour again.</p>",
    ),
    (
        "tarn-bridge-0418",
        "Tarn bridge repairs finished",
        "<p>Repairs to the old bridge in Tarn are finished &amp; both lanes are open again.</p>",
    ),
    (
        "morrow-school-0419",
        "New school year in Morrow",
        "<p>Schools in Morrow will start the new year one week later because of building work.</p>",
    ),
    (
        "eastfield-fair-0420",
        "Eastfield autumn fair",
        "<p>The Eastfield autumn fair drew more visitors than last year, the organisers said.</p>",
    ),
    (
        "kessa-fleet-0421",
        "Kessa Air orders aircraft",
        "<p>Kessa Air ordered six new aircraft for its regional routes, to be delivered from 2028.</p>",
    ),
]
BAD_EVENTS = [
    # cut off in the middle: not JSON
    '{"schema_version": 1, "id": "wire-2001", "source": "newswire", "title": "Harbour", "text": "The harbour authority said',
    # a producer speaking a schema this pipeline does not know
    json.dumps(
        {
            "schema_version": 2,
            "id": "wire-2002",
            "source": "newswire",
            "body": {"text": "Version two of the event schema moved the text."},
        }
    ),
    # required fields missing
    json.dumps({"schema_version": 1, "id": "wire-2003", "source": "newswire"}),
]
