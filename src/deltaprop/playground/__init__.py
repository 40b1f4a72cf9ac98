"""deltaprop-playground: train a small network live in the browser, open any step.

    settings.py   what a learner sets, each bad value refused naming its field
    problem.py    the data (deltaprop.io.data), split and standardized, the boundary's grid
    session.py    a training session: plain SGD by the hand-written backprop, frame by frame
    step.py       one step with every number, checked against jax.grad in float64
    views.py      what each request answers (JSON, the worked example's picture and page)
    server.py     the Starlette app and the `deltaprop-playground` command (uvicorn, 127.0.0.1)
    static/       the page, its script and style: package data, served by the app itself

Imports point down only: the math modules, deltaprop.io.data and deltaprop.teaching; never
deltaprop.run or deltaprop.cli.
"""
