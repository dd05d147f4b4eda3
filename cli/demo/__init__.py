"""``wattledger demo``: a simulated Hopper and Blackwell fleet, run through the real path.

Start at :func:`.session.build`. The modules, in the order the data flows:

* :mod:`.figures` every published figure and stated assumption, with its source;
* :mod:`.fleet` the four nodes, what they serve, and the day's traffic curve;
* :mod:`.traffic` what an engine has counted by a moment (whole tokens, pure functions of time);
* :mod:`.power` what each GPU draws, for the fake NVML;
* :mod:`.pages` the engines' metrics pages, written with ``prometheus_client``;
* :mod:`.serving` those pages over HTTP on 127.0.0.1;
* :mod:`.simulation` fake NVML, pages, agents, OTLP and a collector on one simulated clock;
* :mod:`.store` the demo's own SQLite file and its prices;
* :mod:`.session` one run end to end; :mod:`.present` what is printed.

Nothing here reads the payload corpus: the pages are generated in the engines' shapes.
"""
