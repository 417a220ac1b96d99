"""The math corpus: a seeded generator of questions and answers (twelve kinds of school mathematics).

``mathematics_dataset`` (Saxton et al. 2019), the usual source, does not reproduce across runs, so the
workbook makes its own: problem set ``i`` of seed ``s`` depends on ``(s, i)`` only (:func:`math_problems`),
answers are exact (``fractions.Fraction``; checked against sympy by the data tests), and a document is
24 ``Q: ... / A: ...`` pairs (:func:`math_document`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from .cutting import Loader

MATH_SEED = 0


@dataclass(frozen=True)
class Problem:
    """One generated question: its kind (e.g. ``"gcd"``), the question text and the exact answer as text."""

    kind: str
    question: str
    answer: str


def fmt_number(q: Fraction | int) -> str:
    """An exact number as text: integer, else ``p/q`` in lowest terms."""
    q = Fraction(q)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _fmt_decimal_or_fraction(q: Fraction) -> str:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return fmt_number(q)
    k = 0
    while (q * 10**k).denominator != 1:
        k += 1
    s = f"{abs(q.numerator) * 10**k // q.denominator:0{k + 1}d}"
    s = s if k == 0 else f"{s[:-k]}.{s[-k:]}"
    return ("-" if q < 0 else "") + s


def poly_str(coeffs: dict[int, int | Fraction], var: str = "x") -> str:
    """A polynomial {power: coefficient} as sympy-readable text, highest power first."""
    terms = []
    for p in sorted((p for p, c in coeffs.items() if c != 0), reverse=True):
        c = Fraction(coeffs[p])
        mag = abs(c)
        mono = "" if p == 0 else (var if p == 1 else f"{var}**{p}")
        if p == 0:
            body = fmt_number(mag)
        elif mag == 1:
            body = mono
        else:
            body = f"{fmt_number(mag)}*{mono}"
        sign = "-" if c < 0 else "+"
        terms.append((sign, body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    out = ("-" if first_sign == "-" else "") + first
    for sign, body in terms[1:]:
        out += f" {sign} {body}"
    return out


def _num(rng: random.Random, lo: int = -20, hi: int = 20, nonzero: bool = False) -> int:
    while True:
        v = rng.randint(lo, hi)
        if v or not nonzero:
            return v


def _paren(v: int | Fraction) -> str:
    s = fmt_number(v)
    return f"({s})" if v < 0 or "/" in s else s


def _var(rng: random.Random) -> str:
    return rng.choice("abcdfghjklmnpqrstuvwxyz")


def _p_arithmetic(rng: random.Random) -> Problem:
    n = rng.randint(2, 5)
    vals = [_num(rng, -100, 100) for _ in range(n)]
    ops = [rng.choice("+-") for _ in range(n - 1)]
    expr = _paren(vals[0]) if vals[0] < 0 and rng.random() < 0.5 else fmt_number(vals[0])
    total = Fraction(vals[0])
    for op, v in zip(ops, vals[1:], strict=True):
        expr += f" {op} {_paren(v)}"
        total = total + v if op == "+" else total - v
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "Compute {e}.", "Work out {e}.",
                    "What is the value of {e}?", "Sum {e}."]).format(e=expr)
    return Problem("arithmetic", q, fmt_number(total))


def _expr_tree(rng: random.Random, depth: int) -> tuple[str, Fraction]:
    if depth == 0 or rng.random() < 0.3:
        v = _num(rng, -12, 12, nonzero=True)
        return _paren(v), Fraction(v)
    op = rng.choice("+-*/")
    ls, lv = _expr_tree(rng, depth - 1)
    rs, rv = _expr_tree(rng, depth - 1)
    if op == "/" and rv == 0:
        op = "*"
    val = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else lv}[op]
    return f"({ls} {op} {rs})", val


def _p_mixed(rng: random.Random) -> Problem:
    s, v = _expr_tree(rng, rng.randint(2, 3))
    if s.startswith("(") and s.endswith(")") and rng.random() < 0.5:
        inner = s[1:-1]
        if inner.count("(") == inner.count(")") and _balanced(inner):
            s = inner
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "What is the value of {e}?",
                    "Simplify {e}."]).format(e=s)
    return Problem("arithmetic_mixed", q, fmt_number(v))


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "(") - (c == ")")
        if depth < 0:
            return False
    return depth == 0


def _p_fractions(rng: random.Random) -> Problem:
    a = Fraction(_num(rng, -9, 9, True), rng.randint(2, 12))
    b = Fraction(_num(rng, -9, 9, True), rng.randint(2, 12))
    op = rng.choice("+-*/")
    v = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    e = f"{_paren(a)} {op} {_paren(b)}"
    q = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}. Give the answer as a fraction in lowest terms.",
                    "Work out {e}."]).format(e=e)
    return Problem("fractions", q, fmt_number(v))


def _p_linear(rng: random.Random) -> Problem:
    v = _var(rng)
    x = _num(rng, -20, 20)
    a = _num(rng, -12, 12, nonzero=True)
    if rng.random() < 0.5:
        b = _num(rng, -50, 50)
        lhs, rhs = poly_str({1: a, 0: b}, v), fmt_number(a * x + b)
    else:
        c = _num(rng, -12, 12, nonzero=True)
        while c == a:
            c = _num(rng, -12, 12, nonzero=True)
        b = _num(rng, -50, 50)
        d = a * x + b - c * x
        lhs, rhs = poly_str({1: a, 0: b}, v), poly_str({1: c, 0: d}, v)
    if rng.random() < 0.3:
        lhs, rhs = rhs, lhs
    q = rng.choice(["Solve {l} = {r} for {v}.", "Find {v} such that {l} = {r}.",
                    "What value of {v} satisfies {l} = {r}?", "Solve for {v}: {l} = {r}."]).format(l=lhs, r=rhs, v=v)
    return Problem("linear_equation", q, fmt_number(x))


def _p_linear2(rng: random.Random) -> Problem:
    u, w = rng.sample("abcdfghjkmnpqrstuvwxyz", 2)
    x, y = _num(rng, -10, 10), _num(rng, -10, 10)
    while True:
        a, b, c, d = (_num(rng, -9, 9, True) for _ in range(4))
        if a * d - b * c:
            break

    def side(p: int, q: int) -> str:
        s = f"{poly_str({1: p}, u)} {'+' if q > 0 else '-'} {poly_str({1: abs(q)}, w)}"
        return s

    e1, e2 = f"{side(a, b)} = {a * x + b * y}", f"{side(c, d)} = {c * x + d * y}"
    target, val = (u, x) if rng.random() < 0.5 else (w, y)
    q = rng.choice(["Solve {e1}, {e2} for {t}.", "Suppose {e1} and {e2}. What is {t}?",
                    "Given {e1} and {e2}, find {t}."]).format(e1=e1, e2=e2, t=target)
    return Problem("linear_system", q, fmt_number(val))


def _rand_poly(rng: random.Random, deg: int, lo: int = -9, hi: int = 9) -> dict[int, int]:
    coeffs = {p: _num(rng, lo, hi) for p in range(deg + 1) if rng.random() < 0.75 or p == deg}
    coeffs[deg] = _num(rng, lo, hi, nonzero=True)
    return coeffs


def _derive(coeffs: dict[int, int | Fraction]) -> dict[int, int | Fraction]:
    return {p - 1: c * p for p, c in coeffs.items() if p > 0}


def _p_derivative(rng: random.Random) -> Problem:
    v = _var(rng)
    poly = _rand_poly(rng, rng.randint(1, 6))
    order = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    d = poly
    for _ in range(order):
        d = _derive(d)
    p = poly_str(poly, v)
    if order == 1:
        q = rng.choice(["Differentiate {p} with respect to {v}.", "What is the derivative of {p} wrt {v}?",
                        "Find the first derivative of {p} with respect to {v}.",
                        "Let f({v}) = {p}. What is f'({v})?"]).format(p=p, v=v)
    else:
        nth = {2: "second", 3: "third"}[order]
        q = rng.choice(["What is the {n} derivative of {p} wrt {v}?",
                        "Find the {n} derivative of {p} with respect to {v}.",
                        "Differentiate {p} {k} with respect to {v}."]).format(
            n=nth, p=p, v=v, k={2: "twice", 3: "three times"}[order])
    return Problem("derivative", q, poly_str(d, v))


def _p_evaluate(rng: random.Random) -> Problem:
    v = _var(rng)
    f = rng.choice("fghkqrst")
    poly = _rand_poly(rng, rng.randint(1, 3))
    a = _num(rng, -6, 6)
    val = sum(Fraction(c) * a**p for p, c in poly.items())
    q = rng.choice(["Let {f}({v}) = {p}. What is {f}({a})?", "Let {f}({v}) = {p}. Calculate {f}({a}).",
                    "Suppose {f}({v}) = {p}. Give {f}({a})."]).format(f=f, v=v, p=poly_str(poly, v), a=a)
    return Problem("evaluate", q, fmt_number(val))


def _p_expand(rng: random.Random) -> Problem:
    v = _var(rng)
    factors = [{1: _num(rng, -5, 5, True), 0: _num(rng, -9, 9)} for _ in range(rng.randint(2, 3))]
    prod: dict[int, int] = {0: 1}
    for fac in factors:
        new: dict[int, int] = {}
        for p1, c1 in prod.items():
            for p2, c2 in fac.items():
                new[p1 + p2] = new.get(p1 + p2, 0) + c1 * c2
        prod = new
    e = "*".join(f"({poly_str(f, v)})" for f in factors)
    q = rng.choice(["Expand {e}.", "Multiply out {e}.", "Expand and simplify {e}."]).format(e=e)
    return Problem("expand", q, poly_str(prod, v))


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, math.isqrt(n) + 1))


def _prime_factors(n: int) -> list[int]:
    out, k = [], 2
    while k * k <= n:
        if n % k == 0:
            out.append(k)
            while n % k == 0:
                n //= k
        k += 1
    if n > 1:
        out.append(n)
    return out


def _p_number_theory(rng: random.Random) -> Problem:
    kind = rng.choice(["gcd", "lcm", "prime", "factors", "remainder", "multiple"])
    if kind == "gcd":
        g = rng.randint(1, 60)
        a, b = g * rng.randint(1, 40), g * rng.randint(1, 40)
        q = rng.choice(["What is the greatest common divisor of {a} and {b}?",
                        "Calculate the highest common factor of {a} and {b}.",
                        "What is the greatest common factor of {a} and {b}?"]).format(a=a, b=b)
        return Problem("gcd", q, str(math.gcd(a, b)))
    if kind == "lcm":
        a, b = rng.randint(2, 120), rng.randint(2, 120)
        q = rng.choice(["What is the least common multiple of {a} and {b}?",
                        "Calculate the lowest common multiple of {a} and {b}.",
                        "What is the smallest common multiple of {a} and {b}?"]).format(a=a, b=b)
        return Problem("lcm", q, str(math.lcm(a, b)))
    if kind == "prime":
        n = rng.randint(2, 20000)
        if rng.random() < 0.4:
            while not _is_prime(n):
                n += 1
        q = rng.choice(["Is {n} a prime number?", "Is {n} prime?", "Is {n} composite?"]).format(n=n)
        ans = _is_prime(n) if "composite" not in q else not _is_prime(n)
        return Problem("prime", q, str(ans))
    if kind == "factors":
        n = rng.randint(4, 50000)
        q = rng.choice(["What are the prime factors of {n}?", "List the prime factors of {n}."]).format(n=n)
        return Problem("prime_factors", q, ", ".join(map(str, _prime_factors(n))))
    if kind == "remainder":
        a, b = rng.randint(10, 100000), rng.randint(2, 99)
        q = rng.choice(["What is the remainder when {a} is divided by {b}?",
                        "Calculate the remainder when {a} is divided by {b}."]).format(a=a, b=b)
        return Problem("remainder", q, str(a % b))
    b = rng.randint(2, 60)
    a = b * rng.randint(2, 900) + (0 if rng.random() < 0.5 else rng.randint(1, b - 1))
    q = rng.choice(["Is {a} a multiple of {b}?", "Does {b} divide {a}?", "Is {a} divisible by {b}?"]).format(a=a, b=b)
    return Problem("divisibility", q, str(a % b == 0))


def _p_probability(rng: random.Random) -> Problem:
    kind = rng.choice(["bag", "dice", "coins"])
    if kind == "bag":
        letters = rng.sample("abcdefghijklmnopqrstuvwxyz", rng.randint(2, 4))
        counts = {c: rng.randint(1, 6) for c in letters}
        bag = "".join(c * n for c, n in counts.items())
        bag = "".join(rng.sample(bag, len(bag)))
        k = rng.randint(2, min(3, len(bag)))
        target = "".join(sorted(rng.choice(letters) for _ in range(k)))
        need = {c: target.count(c) for c in sorted(set(target))}  # sorted: set order varies by hash seed
        ways = math.prod(math.comb(counts[c], m) for c, m in need.items())
        p = Fraction(ways, math.comb(len(bag), k))
        desc = ", ".join(f"{n} {c}" for c, n in need.items())
        q = rng.choice(["{k} letters picked without replacement from {b}. What is prob of picking {d}?",
                        "What is the probability of picking {d} when {k} letters are picked without replacement from {b}?",
                        ]).format(k=k if rng.random() < 0.5 else ["", "", "Two", "Three"][k], b=bag, d=desc)
        q = q[0].upper() + q[1:]
        return Problem("probability_bag", q, fmt_number(p))
    if kind == "dice":
        n, s = rng.randint(1, 3), rng.choice([4, 6, 8])
        tot = rng.randint(n, n * s)
        ways = sum(1 for r in _dice(n, s) if sum(r) == tot)
        p = Fraction(ways, s**n)
        q = (f"{n} fair {s}-sided dice are rolled. What is the probability that the sum of the faces is {tot}?"
             if n > 1 else f"A fair {s}-sided die is rolled. What is the probability that it shows {tot}?")
        return Problem("probability_dice", q, fmt_number(p))
    n = rng.randint(1, 10)
    k = rng.randint(0, n)
    word = rng.choice(["exactly", "at least", "at most"])
    rng_k = {"exactly": [k], "at least": range(k, n + 1), "at most": range(0, k + 1)}[word]
    p = Fraction(sum(math.comb(n, j) for j in rng_k), 2**n)
    q = f"A fair coin is tossed {n} times. What is the probability of getting {word} {k} heads?"
    return Problem("probability_coins", q, fmt_number(p))


def _dice(n: int, s: int) -> Iterator[tuple[int, ...]]:
    if n == 0:
        yield ()
        return
    for r in _dice(n - 1, s):
        for face in range(1, s + 1):
            yield (*r, face)


def _rand_value(rng: random.Random) -> tuple[str, Fraction]:
    kind = rng.random()
    if kind < 0.35:
        v = _num(rng, -50, 50)
        return str(v), Fraction(v)
    if kind < 0.7:
        v = Fraction(_num(rng, -30, 30, True), rng.randint(2, 15))
        return fmt_number(v), v
    v = Fraction(_num(rng, -9999, 9999), 10 ** rng.randint(1, 3))
    return _fmt_decimal_or_fraction(v), v


def _p_comparison(rng: random.Random) -> Problem:
    kind = rng.choice(["pair", "which", "extreme", "sort"])
    if kind in ("pair", "which"):
        (sa, a), (sb, b) = _rand_value(rng), _rand_value(rng)
        while a == b:
            sb, b = _rand_value(rng)
        if kind == "pair":
            rel = rng.choice(["less than", "greater than", "at most", "at least"])
            ans = {"less than": a < b, "greater than": a > b, "at most": a <= b, "at least": a >= b}[rel]
            return Problem("comparison", f"Is {sa} {rel} {sb}?", str(ans))
        big = rng.random() < 0.5
        q = f"Which is {'bigger' if big else 'smaller'}: {sa} or {sb}?"
        return Problem("comparison", q, sa if (a > b) == big else sb)
    vals = []
    while len(vals) < rng.randint(3, 5):
        s, v = _rand_value(rng)
        if all(v != w for _, w in vals):
            vals.append((s, v))
    listed = ", ".join(s for s, _ in vals)
    if kind == "extreme":
        big = rng.random() < 0.5
        pick = max(vals, key=lambda t: t[1]) if big else min(vals, key=lambda t: t[1])
        word = rng.choice(["biggest", "largest"]) if big else rng.choice(["smallest", "least"])
        return Problem("comparison", f"What is the {word} value in {listed}?", pick[0])
    dec = rng.random() < 0.5
    order = sorted(vals, key=lambda t: t[1], reverse=dec)
    q = f"Sort {listed} in {'decreasing' if dec else 'increasing'} order."
    return Problem("sort", q, ", ".join(s for s, _ in order))


UNITS = {
    "length": {"millimetres": Fraction(1, 1000), "centimetres": Fraction(1, 100), "metres": Fraction(1),
               "kilometres": Fraction(1000)},
    "mass": {"milligrams": Fraction(1, 1000), "grams": Fraction(1), "kilograms": Fraction(1000),
             "tonnes": Fraction(1_000_000)},
    "time": {"seconds": Fraction(1), "minutes": Fraction(60), "hours": Fraction(3600), "days": Fraction(86400),
             "weeks": Fraction(604800)},
    "volume": {"millilitres": Fraction(1, 1000), "litres": Fraction(1)},
}


def _p_units(rng: random.Random) -> Problem:
    table = UNITS[rng.choice(sorted(UNITS))]
    u1, u2 = rng.sample(sorted(table), 2)
    x = Fraction(rng.randint(1, 99999), 10 ** rng.randint(0, 3))
    y = x * table[u1] / table[u2]
    sx = _fmt_decimal_or_fraction(x)
    q = rng.choice(["How many {b} are there in {x} {a}?", "Convert {x} {a} to {b}.",
                    "What is {x} {a} in {b}?"]).format(x=sx, a=u1, b=u2)
    return Problem("units", q, _fmt_decimal_or_fraction(y))


MATH_KINDS: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": _p_arithmetic,
    "arithmetic_mixed": _p_mixed,
    "fractions": _p_fractions,
    "linear_equation": _p_linear,
    "linear_system": _p_linear2,
    "derivative": _p_derivative,
    "evaluate": _p_evaluate,
    "expand": _p_expand,
    "number_theory": _p_number_theory,
    "probability": _p_probability,
    "comparison": _p_comparison,
    "units": _p_units,
}


def math_problems(seed: int, index: int, n: int = 24) -> list[Problem]:
    """Problem set ``index`` of the generator with ``seed``: ``n`` problems, depending on (seed, index) only."""
    rng = random.Random(f"repro-math:{seed}:{index}")
    kinds = sorted(MATH_KINDS)
    return [MATH_KINDS[rng.choice(kinds)](rng) for _ in range(n)]


def math_document(seed: int, index: int) -> str:
    """Document ``index`` of the math corpus: the 24 problems of :func:`math_problems` as ``Q: ...\\nA: ...``
    pairs separated by blank lines."""
    return "\n\n".join(f"Q: {p.question}\nA: {p.answer}" for p in math_problems(seed, index))



def math_items(seed: int = MATH_SEED) -> Callable[[], Iterator[tuple[str, Loader]]]:
    """The ``items`` of the math source: an endless ``(doc_id, load)`` stream, ``math:<seed>:<i>`` for i = 0, 1, ..."""

    def items() -> Iterator[tuple[str, Loader]]:
        i = 0
        while True:
            yield f"math:{seed}:{i}", (lambda i=i: math_document(seed, i))
            i += 1

    return items

