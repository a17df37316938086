"""Deterministic SEIR epidemic projection, the quickstart model.

Reads its parameters from modelrunner, integrates the SEIR equations with a fixed-step
fourth-order Runge-Kutta scheme and writes ``projection.csv`` and ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelrunner import job

# Positions in the state vector. Cumulative infections are integrated alongside the compartments
# so that daily new infections are exact rather than estimated from changes in S.
SUSCEPTIBLE, EXPOSED, INFECTIOUS, RECOVERED, CUMULATIVE = range(5)
COMPARTMENTS = [SUSCEPTIBLE, EXPOSED, INFECTIOUS, RECOVERED]
MIN_STEPS_PER_DAY = 10
# No compartment may lose more than this fraction of itself in one step, or RK4 overshoots.
MAX_RATE_PER_STEP = 0.5
PROGRESS_REPORTS = 12

State = NDArray[np.float64]


@dataclass(frozen=True)
class Rates:
    """Per-day transition rates of the SEIR equations.

    ``transmission`` is contacts that infect per infectious person (r0 / infectious_days),
    ``onset`` moves exposed to infectious (1 / incubation_days) and ``recovery`` moves
    infectious to recovered (1 / infectious_days).
    """

    transmission: float
    onset: float
    recovery: float

    def fastest(self) -> float:
        """The largest of the three rates."""
        return max(self.transmission, self.onset, self.recovery)


def derivative(state: State, rates: Rates, population: float) -> State:
    """Time derivative (per day) of the state vector [S, E, I, R, cumulative infections]."""
    infections = rates.transmission * state[SUSCEPTIBLE] * state[INFECTIOUS] / population
    onsets = rates.onset * state[EXPOSED]
    recoveries = rates.recovery * state[INFECTIOUS]
    return np.array([-infections, infections - onsets, onsets - recoveries, recoveries, infections])


def rk4_step(state: State, rates: Rates, population: float, dt: float) -> State:
    """The state after one classic Runge-Kutta step of ``dt`` days."""
    k1 = derivative(state, rates, population)
    k2 = derivative(state + 0.5 * dt * k1, rates, population)
    k3 = derivative(state + 0.5 * dt * k2, rates, population)
    k4 = derivative(state + dt * k3, rates, population)
    return state + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def project(params: dict[str, Any]) -> State:
    """Integrate the epidemic and return the daily states.

    The result has shape ``(days + 1, 5)``: row ``d`` is [S, E, I, R, cumulative
    infections] at the end of day ``d``, row 0 being the initial state. Progress is
    reported as the days go by.
    """
    population = float(params["population"])
    days = int(params["days"])
    normal = Rates(
        transmission=params["r0"] / params["infectious_days"],
        onset=1.0 / params["incubation_days"],
        recovery=1.0 / params["infectious_days"],
    )
    reduced = Rates(
        transmission=normal.transmission * (1.0 - params["intervention_strength"]),
        onset=normal.onset,
        recovery=normal.recovery,
    )
    steps_per_day = max(MIN_STEPS_PER_DAY, math.ceil(normal.fastest() / MAX_RATE_PER_STEP))
    dt = 1.0 / steps_per_day

    states = np.zeros((days + 1, 5))
    infected = float(params["initial_infected"])
    states[0] = [population - infected, 0.0, infected, 0.0, 0.0]
    report_every = math.ceil(days / PROGRESS_REPORTS)

    state = states[0]
    for day in range(days):
        # The intervention switches on at a day boundary, so each day uses a single rate set.
        rates = reduced if day >= params["intervention_day"] else normal
        for _ in range(steps_per_day):
            state = rk4_step(state, rates, population, dt)
        states[day + 1] = state
        if (day + 1) % report_every == 0 or day + 1 == days:
            job.progress(
                0.9 * (day + 1) / days,
                f"day {day + 1} of {days}: {state[INFECTIOUS]:,.0f} infectious, "
                f"{state[CUMULATIVE] + infected:,.0f} infected so far",
            )
    return states


def check_conservation(states: State, population: float) -> None:
    """Raise if S+E+I+R drifts from the population or a compartment goes negative."""
    totals = states[:, COMPARTMENTS].sum(axis=1)
    if not np.allclose(totals, population, rtol=1e-9, atol=1e-6):
        worst = float(np.max(np.abs(totals - population)))
        raise AssertionError(f"S+E+I+R drifted from the population by up to {worst:g}")
    if np.min(states[:, COMPARTMENTS]) < -1e-6 * population:
        raise AssertionError("a compartment became negative: the integration step is too large")


def write_projection(path: Path, states: State) -> None:
    """Write the daily compartments and new infections as CSV."""
    new_infections = np.diff(states[:, CUMULATIVE], prepend=0.0)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["day", "susceptible", "exposed", "infectious", "recovered", "new_infections"]
        )
        for day, (row, new) in enumerate(zip(states, new_infections, strict=True)):
            writer.writerow([day, *(f"{row[index]:.3f}" for index in COMPARTMENTS), f"{new:.3f}"])


def summarize(states: State, params: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of the projection, with the parameters that produced it."""
    population = float(params["population"])
    peak_day = int(np.argmax(states[:, INFECTIOUS]))
    final = states[-1]
    # Everyone who left S was infected, including the initially infectious.
    total_infected = population - float(final[SUSCEPTIBLE])
    return {
        "peak_day": peak_day,
        "peak_infectious": round(float(states[peak_day, INFECTIOUS]), 3),
        "total_infected": round(total_infected, 3),
        "attack_rate": round(total_infected / population, 6),
        "final": {
            "day": len(states) - 1,
            "susceptible": round(float(final[SUSCEPTIBLE]), 3),
            "exposed": round(float(final[EXPOSED]), 3),
            "infectious": round(float(final[INFECTIOUS]), 3),
            "recovered": round(float(final[RECOVERED]), 3),
        },
        "params": params,
    }


def main() -> None:
    """Run the projection from modelrunner's environment and write the outputs."""
    try:
        params = job.params()
        outputs = job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"seir: {error}\nRun it through modelrunner, e.g. `modelrunner run seir --local`.")
    if params["initial_infected"] > params["population"]:
        sys.exit("seir: initial_infected cannot exceed population")

    job.progress(0.0, f"projecting {params['days']} days for {params['population']:,} people")
    states = project(params)
    check_conservation(states, float(params["population"]))

    job.progress(0.95, "writing projection.csv and summary.json")
    outputs.mkdir(parents=True, exist_ok=True)
    write_projection(outputs / "projection.csv", states)
    summary = summarize(states, params)
    (outputs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    job.progress(
        1.0,
        f"done: peak of {summary['peak_infectious']:,.0f} infectious on day "
        f"{summary['peak_day']}, attack rate {summary['attack_rate']:.1%}",
    )


if __name__ == "__main__":
    main()
