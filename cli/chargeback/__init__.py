"""Chargeback: inference cost per cost centre, model and period, exported in FOCUS.

How the package fits together:

* ``periods`` names the stretches of time an export covers (hours, days, ISO weeks, months).
* ``settings`` reads the ``[chargeback]`` section: cost centres, allocation rules, idle handling
  and the names that fill FOCUS's account and provider columns.
* ``allocation`` turns the priced usage of a window into charge lines, one per cost centre,
  model, resource and charge period, with idle time kept apart or shared out.
* ``focus`` maps charge lines to FOCUS 1.2 Cost and Usage rows and declares the columns' types;
  ``writers`` writes them as CSV or Parquet, aside and then renamed into place.
* ``export`` is one export of one window, from the store to a file.
* ``schedule_settings``, ``runs`` and ``scheduler`` run configured exports on cron schedules:
  the ``export_runs`` table is the lock two schedulers share, APScheduler's job store keeps the
  schedule across restarts, and missed periods are caught up.
"""
