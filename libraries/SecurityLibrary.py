"""Security: bad input to the SUT's API, and API-key authentication."""

from __future__ import annotations

import atexit
import os
import secrets
import time

from _perf_base import context, figure, require_target, robot_var, run_context, skip
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import security
from conductor_perf.target import Target, TargetError


@library(scope="SUITE", auto_keywords=False)
class SecurityLibrary:
    """Sends bad input to the SUT and probes its API-key authentication.

    = Bad input =

    Each case of the table in ``conductor_perf.bench.security`` (path traversal and invalid
    characters in ids, unknown JSON fields, invalid JSON, bodies over 1 MiB, missing required
    fields, wrong methods, huge query values) is sent as it is, over a plain socket, with
    `Send Bad Input`. `Answer Should Match The Contract` then checks the status and the shape of
    the answer (a 4xx with the error envelope, or what the contract says for that route), and
    `Nothing Should Have Been Created Outside The Root` that no traversal got through.

    = Authentication =

    `Start Conductor With Api Key` starts a second instance of the SUT with ``--api-key`` when the
    suite owns it (capability ``auth``: the embedded conductor or a managed conductor-loop binary);
    against an external SUT it uses the SUT itself when ``CONDUCTOR_API_KEY`` is set, else the test
    is skipped naming the capability. The other auth keywords probe every protected and exempt route.

    Example:
    | `Send Bad Input`    traversal-in-project-id-of-new-task
    | `Answer Should Match The Contract`
    | `Nothing Should Have Been Created Outside The Root`
    """

    def __init__(self) -> None:
        self._token = f"{os.getpid()}-{time.time_ns() % 10**6}"
        self._case: security.BadInput | None = None
        self._answer: security.Answer | None = None
        self._tried: list[str] = []
        self._auth: Target | None = None
        self._auth_owned = False
        self._key = ""
        self._root_note_logged = False

    # ------------------------------------------------------------------ bad input

    @keyword
    def send_bad_input(self, case: str) -> int:
        """Send the bad-input case named ``case`` to the SUT; returns the HTTP status (0: no answer).

        Example:
        | ${status} =    `Send Bad Input`    unknown-field-in-new-task
        """
        try:
            c = security.case(case, self._token)
        except KeyError as exc:
            raise AssertionError(exc.args[0]) from None
        target = require_target()
        headers = dict(target.auth_headers())
        if c.prepare is not None:
            method, path, body = c.prepare
            ready = security.send(target, method, path, body, {**headers, "Content-Type": "application/json"})
            if not 200 <= ready.status < 300:
                raise AssertionError(f"{c.name}: the preparing {method} {path} failed: {ready.describe()}")
        if c.body is not None:
            headers["Content-Type"] = "application/json"
        answer = security.send(target, c.method, c.path, c.body, headers)
        self._case, self._answer = c, answer
        self._tried.append(c.name)
        logger.info(f"sent {c.describe()}; answer: {answer.describe()} in {answer.elapsed_ms:.0f} ms")
        return answer.status

    @keyword
    def answer_should_match_the_contract(self) -> None:
        """Fail unless the last answer is the one the contract requires (one line saying what differs).

        Example:
        | `Answer Should Match The Contract`
        """
        if self._case is None or self._answer is None:
            raise AssertionError("no bad input sent: call 'Send Bad Input' first")
        problem = security.judge(self._case, self._answer)
        if problem:
            # recorded, so the summary lists the miss with the status the SUT gave (a real conductor-loop
            # answers several of these with 201 or 500), not only robot's test status
            suite, test = context()
            run_context().record(suite=suite, test=test, metric=f"bad input {self._case.name}: HTTP status",
                                 unit="HTTP status", value=float(self._answer.status), verdict="fail",
                                 message=f"{self._case.name}: {problem}")  # fmt: skip
            raise AssertionError(f"{self._case.name}: {problem}")

    @keyword
    def nothing_should_have_been_created_outside_the_root(self) -> None:
        """Fail if anything named by a traversal payload exists around the SUT's runs root.

        Without a known runs root (external SUT, no ``CONDUCTOR_ROOT``) the check is recorded as
        skipped, with the reason, and the test goes on. Example:
        | `Nothing Should Have Been Created Outside The Root`
        """
        target = require_target()
        if target.root is None:
            if not self._root_note_logged:
                self._root_note_logged = True
                run_context().record(suite=str(robot_var("${SUITE NAME}", "")), test="", metric="outside-root check",
                                     unit="", value=None, verdict="skipped",
                                     message="not checked: the SUT's runs root is unknown (set CONDUCTOR_ROOT)")  # fmt: skip
                logger.warn("bad input: nothing-outside-the-root is not checked without CONDUCTOR_ROOT")
            return
        found = security.escapes(target.root, self._token)
        if found:
            raise AssertionError(f"created outside the runs root {target.root}: {', '.join(found[:3])}")

    @keyword
    def get_bad_inputs_tried(self, op: str | None = None, expected: float | None = None) -> int:
        """How many bad inputs this suite sent (a figure); asserts when given an operator and a target.

        Example:
        | `Get Bad Inputs Tried`    >=    40
        """
        return int(figure("bad inputs tried", len(self._tried), "inputs", op, expected,
                          details={"cases": sorted(set(self._tried)), "table": len(security.CASE_NAMES)}))  # fmt: skip

    # ------------------------------------------------------------------ auth

    @keyword
    def start_conductor_with_api_key(self) -> str:
        """A conductor that requires an API key; returns its URL (started once per suite).

        An SUT the suite owns (capability ``auth``): a second instance of it (the same embedded
        conductor or binary, its arguments and config) with a random ``--api-key`` and its own runs
        root, log in ``auth-sut-<pid>/``. External SUT: the SUT itself, when ``CONDUCTOR_API_KEY`` is
        set; otherwise the test is skipped naming the missing capability. Example:
        | `Start Conductor With Api Key`
        """
        if self._auth is not None:
            return self._auth.url
        target = require_target()
        gap = target.capability_gap("auth")
        if gap is not None:
            if not target.api_key:
                skip(f"{gap}; to test the SUT's own key, set CONDUCTOR_API_KEY")
            self._auth, self._auth_owned, self._key = target, False, target.api_key
            return target.url
        key = "perf-" + secrets.token_hex(12)
        base = run_context().results_dir / f"auth-sut-{os.getpid()}"
        run_context().note_scratch(base / "root")
        try:
            self._auth = target.start_another(root=base / "root", log_dir=base, api_key=key)
        except TargetError as exc:
            raise AssertionError(f"could not start a conductor with an API key: {exc}") from None
        self._auth_owned, self._key = True, key
        atexit.register(self._auth.stop)
        logger.info(f"{self._auth.name} with an API key (pid {self._auth.pid}) at {self._auth.url}")
        return self._auth.url

    @keyword
    def stop_conductor_with_api_key(self) -> None:
        """Stop the second conductor (the SUT itself, when it was used with its own key, is left alone).

        Example:
        | Suite Teardown    `Stop Conductor With Api Key`
        """
        auth, self._auth = self._auth, None
        if auth is not None and self._auth_owned:
            auth.stop()

    def _require_auth(self) -> Target:
        if self._auth is None:
            raise AssertionError("no conductor with an API key: call 'Start Conductor With Api Key' first")
        code = self._auth.exit_status() if self._auth_owned else None
        if code is not None:
            raise AssertionError(f"the {self._auth.name} with an API key exited (code {code}); log {self._auth.log_path}")
        return self._auth

    def _probe(
        self, kinds: tuple[str, ...], routes: tuple[security.Route, ...], expect: str, label: str
    ) -> None:
        target = self._require_auth()
        tried, wrong, messages = 0, 0, []
        for kind in kinds:
            probe = security.probe_auth(target, self._key, kind, routes, expect=expect)
            logger.info(probe.message())
            tried += probe.tried
            wrong += len(probe.failures)
            if probe.failures:
                messages.append(probe.message())
        details = {"credentials": list(kinds), "routes": [f"{r.method} {r.path}" for r in routes]}
        figure(f"{label}: requests tried", tried, "requests", details=details)
        try:
            figure(
                f"{label}: wrong answers",
                wrong,
                "requests",
                "==",
                0,
                details={**details, "failures": messages},
            )
        except AssertionError:
            raise AssertionError(" | ".join(messages)) from None

    @keyword
    def protected_routes_should_answer_401_without_a_valid_key(self) -> None:
        """Every protected route, without a key and with wrong ones, answers 401 with the exact body and header.

        The body must be ``{"error":"unauthorized","message":"valid API key required"}`` and
        ``WWW-Authenticate`` must be ``Bearer realm="conductor"``. Wrong forms tried: no key, a
        wrong Bearer key, a wrong ``X-API-Key``, the right key with the ``Basic`` scheme. Example:
        | `Protected Routes Should Answer 401 Without A Valid Key`
        """
        self._probe(("none", "wrong-bearer", "wrong-x-api-key", "basic"), security.PROTECTED_ROUTES, "401",
                    "protected routes without a valid key")  # fmt: skip

    @keyword
    def protected_routes_should_accept_the_key(self, form: str = "bearer") -> None:
        """Every protected route lets a request with the key through (``form``: ``bearer`` or ``x-api-key``).

        Let through means any answer but 401/403 or a server error; a stream route that keeps the
        request open counts as let through. Example:
        | `Protected Routes Should Accept The Key`    x-api-key
        """
        if form not in ("bearer", "x-api-key"):
            raise AssertionError(f"form must be 'bearer' or 'x-api-key', got {form!r}")
        self._probe((form,), security.PROTECTED_ROUTES, "through", f"protected routes with the key as {form}")

    @keyword
    def exempt_routes_should_stay_open_without_a_key(self) -> None:
        """``/api/v1/health``, ``/api/v1/version``, ``/metrics`` and ``/healthz`` answer without a key.

        Example:
        | `Exempt Routes Should Stay Open Without A Key`
        """
        self._probe(("none",), security.EXEMPT_ROUTES, "through", "exempt routes without a key")
