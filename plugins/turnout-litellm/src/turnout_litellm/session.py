"""Job sessions: several calls billed as one SaaS-LiteLLM job.

    with JobSession(deployment, job_type="resume_analysis") as job:   # POST /jobs/create
        parsed = job.chat(messages)                                     # POST /jobs/{id}/llm-call
        with job.stream(more) as stream:                                # POST /jobs/{id}/llm-call-stream
            for chunk in stream: ...
    job.result.costs                                                    # POST /jobs/{id}/complete

Leaving the block normally completes the job as `completed`; an exception
escaping it completes the job as `failed` (no credit is spent) and goes on.
`/complete` is sent at most once per job and never retried: the server
charges again on a repeat. `create` and the calls are retried under the
deployment's retry policy, except what the server has already retried or may
have run: a wrapped upstream failure (`LLM call failed: ...`), a call whose
answer was lost after it was sent (read timeout, dropped connection), an error
frame in a stream. A request the server would not carry faithfully (tools,
`response_format`, a parameter it drops) is refused before it is sent.

The protocol lives in the provider's sans-IO flows; `JobSession` drives them
with `turnout.run_flow` / `stream_flow` over an `httpx.Client`, and
`AsyncJobSession` with `arun_flow` / `astream_flow` over an `httpx.AsyncClient`.
Everything else (state, retries, error clean-up) is shared below.
"""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from attrs import evolve

from turnout import (
    CallLimits,
    ChatChunk,
    ChatResponse,
    ConfigError,
    Deployment,
    ErrorKind,
    FieldError,
    Flow,
    Message,
    ProviderError,
    RetryOverrides,
    RetryPolicy,
    arun_flow,
    astream_flow,
    attribute_error,
    effective_policy,
    error_for,
    redact,
    retrying,
    run_flow,
    stream_flow,
)

from .provider import JobCallRequest, JobResult, LiteLLM

__all__ = ["AsyncJobSession", "AsyncJobStream", "JobSession", "JobStream"]

T = TypeVar("T")
MessagesIn = Iterable[Message | Mapping[str, Any]]

_HEADERS = {"user-agent": "turnout-litellm/0.1"}
# An error message sent with a failed completion is cut here.
ERROR_MESSAGE_LIMIT = 1000


class _JobBase:
    """State and decisions shared by `JobSession` and `AsyncJobSession`; no I/O."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        job_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        retry_policy: RetryPolicy | RetryOverrides | None = None,
        deadline: float = 600.0,
        provider: LiteLLM | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(deployment, Deployment):
            raise ConfigError(
                "must be a turnout.Deployment", path="deployment", value=type(deployment).__name__
            )
        self.provider = provider or LiteLLM()
        if deployment.provider != self.provider.name:
            raise ConfigError(
                f"a job session needs a {self.provider.name!r} deployment",
                path="deployment.provider",
                value=deployment.provider,
            )
        self.provider.check_deployment(deployment, "deployment")
        if job_type is not None and (not isinstance(job_type, str) or not job_type):
            raise ConfigError("must be a non-empty string", path="job_type", value=job_type)
        if not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0:
            raise ConfigError("must be a positive number of seconds", path="deadline", value=deadline)
        self.deployment = deployment
        self.job_type = job_type or self.provider.job_type(deployment)
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        self.user_id = user_id
        # The provider's documented policy, then the deployment's, then the session's:
        # a RetryPolicy replaces what came before, RetryOverrides adjust it.
        self.retry_policy: RetryPolicy = effective_policy(
            self.provider.retry_policy, deployment.retry_policy, retry_policy
        )
        self.deadline = float(deadline)
        self._rng = rng
        self.job_id: str | None = None
        # Set once /complete answered: the final status and the job's costs.
        self.result: JobResult | None = None
        # Set when completing the job failed (the request failed or was refused).
        self.complete_error: Exception | None = None
        self._completion_sent = False
        self._lock = threading.Lock()

    # -- flows ---------------------------------------------------------------

    def _limits(self, timeout: float | None = None) -> CallLimits:
        """Each request of the session (create, a call, complete) has the whole deadline;
        `timeout` (a call's own) replaces the endpoint's timeout, as a router's does."""
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return CallLimits.starting_now(self.deadline, override=timeout)

    def _retrying(
        self, make: Callable[[], Flow[T]], limits: CallLimits, *, streaming: bool = False
    ) -> Flow[T]:
        """The router's own retry layer, so a job's call fails exactly as a router's would."""
        return retrying(
            make,
            self.retry_policy,
            limits=limits,
            streaming=streaming,
            name=self.deployment.name,
            provider=self.provider.name,
            rng=self._rng,
        )

    def _create_flow(self, limits: CallLimits) -> Flow[str]:
        if self.job_id is not None or self._completion_sent:
            raise RuntimeError("this job session has already been started")
        return self._retrying(
            lambda: self.provider.create_job(
                self.deployment, job_type=self.job_type, metadata=self.metadata, user_id=self.user_id
            ),
            limits,
        )

    def _call_request(
        self, messages: MessagesIn, model: str | None, params: dict[str, Any]
    ) -> JobCallRequest:
        if self.job_id is None:
            raise RuntimeError(
                "the job is not started: use the session as a context manager, or call start()"
            )
        if self._completion_sent:
            raise RuntimeError(f"job {self.job_id} is already completed")
        return JobCallRequest(messages, params, job_id=self.job_id, model=model)

    def _carried(self, request: JobCallRequest, *, stream: bool) -> JobCallRequest:
        """The request, or the router's `unsupported_feature` error before anything is
        sent: the server would drop what it cannot carry without a word."""
        missing = self.provider.unsupported(self.deployment, request, stream=stream)
        if missing:
            raise self._own(
                error_for(
                    ErrorKind.BAD_REQUEST,
                    f"SaaS-LiteLLM cannot carry this request ({', '.join(missing)})",
                    code="unsupported_feature",
                    details=(FieldError(self.deployment.name, "unsupported_feature", ", ".join(missing)),),
                )
            )
        return request

    def _call_flow(
        self, messages: MessagesIn, model: str | None, params: dict[str, Any], limits: CallLimits
    ) -> Flow[ChatResponse]:
        request = self._carried(self._call_request(messages, model, params), stream=False)
        return self._retrying(lambda: self.provider.job_call(self.deployment, request), limits)

    def _stream_flow(
        self, messages: MessagesIn, model: str | None, params: dict[str, Any], limits: CallLimits
    ) -> Flow[None]:
        request = self._carried(self._call_request(messages, model, params), stream=True)
        return self._retrying(
            lambda: self.provider.job_stream(self.deployment, request), limits, streaming=True
        )

    def _complete_flow(self, status: str, error_message: str | None) -> Flow[JobResult] | None:
        """The completion to send, or None when this job needs none (never started, or
        its completion already sent). Claimed under the lock: a job is completed once."""
        if status not in ("completed", "failed"):
            raise ValueError(f"a job is completed as 'completed' or 'failed', not {status!r}")
        with self._lock:
            if self.job_id is None or self._completion_sent:
                return None
            self._completion_sent = True
            job_id = self.job_id
        message = (
            None
            if error_message is None
            else redact(error_message, self.deployment.key())[:ERROR_MESSAGE_LIMIT]
        )
        # Deliberately not wrapped in `retrying`: a repeated /complete charges again.
        return self.provider.complete_job(self.deployment, job_id, status=status, error_message=message)

    # -- errors --------------------------------------------------------------

    def _own(self, error: ProviderError) -> ProviderError:
        """Attribute a transport error to this deployment and keep the key out of it."""
        return attribute_error(
            error, provider=self.provider.name, deployment=self.deployment.name, secret=self.deployment.key()
        )

    def _attributed(self, response: ChatResponse) -> ChatResponse:
        return evolve(response, deployment=self.deployment.name, provider=self.provider.name)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ProviderError):
            return f"{exc.kind.value}: {exc.message}"
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _no_completion(self) -> RuntimeError:
        """Why `complete()` sends nothing: never started, completed, or its one
        completion failed (it is not sent again: a repeat may charge again)."""
        if self.job_id is None:
            return RuntimeError("the job is not started")
        if self.complete_error is not None:
            return RuntimeError(
                f"completing job {self.job_id} was already tried and failed ({self.complete_error}); "
                "it is not sent again, as a repeated /complete may charge again"
            )
        return RuntimeError(f"job {self.job_id} is already completed")

    def _failed_completion_failed(self, exc: BaseException, error: Exception) -> None:
        if isinstance(error, ProviderError):
            self._own(error)
        exc.add_note(f"turnout-litellm: completing job {self.job_id} as failed also failed: {error}")

    def __repr__(self) -> str:
        if self.complete_error is not None:
            state = "completion failed"
        else:
            state = "completed" if self._completion_sent else ("open" if self.job_id else "not started")
        return f"<{type(self).__name__} {self.deployment.name!r} job_id={self.job_id!r} {state}>"


class JobSession(_JobBase):
    """One SaaS-LiteLLM job, synchronously: `with JobSession(deployment) as job: job.chat(...)`.

    `http_client`: an `httpx.Client` to use (not closed here); otherwise the
    session opens its own (with `transport`, if given) and closes it on exit.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(deployment, **options)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(
            transport=transport, follow_redirects=False, headers=_HEADERS
        )

    def _run(self, flow: Flow[T], limits: CallLimits) -> T:
        try:
            result: T = run_flow(flow, self._client, limits=limits)
        except ProviderError as error:
            raise self._own(error) from None
        return result

    def start(self) -> str:
        """Create the job (`POST /jobs/create`); returns its id."""
        limits = self._limits()
        self.job_id = self._run(self._create_flow(limits), limits)
        return self.job_id

    def chat(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatResponse:
        """One call in the job (`POST /jobs/{id}/llm-call`). `model`: another alias or
        group than the deployment's; `timeout`: this call's, in seconds, instead of the
        endpoint's; `params`: temperature, max_tokens, top_p, stop, purpose, call_metadata."""
        limits = self._limits(timeout)
        return self._attributed(self._run(self._call_flow(messages, model, params, limits), limits))

    def stream(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> JobStream:
        """One streamed call in the job (`POST /jobs/{id}/llm-call-stream`; broken on the
        server up to v1.0.2 at least, see the docs)."""
        limits = self._limits(timeout)
        flow = self._stream_flow(messages, model, params, limits)
        return JobStream(stream_flow(flow, self._client, limits=limits), self)

    def _complete_now(self, flow: Flow[JobResult]) -> JobResult:
        """Send the one completion; a failure is kept in `complete_error` and raised."""
        try:
            self.result = self._run(flow, self._limits())
        except Exception as error:
            self.complete_error = error
            raise
        return self.result

    def complete(self, status: str = "completed", *, error_message: str | None = None) -> JobResult:
        """Complete the job now (`POST /jobs/{id}/complete`), once; returns its costs.
        Leaving the `with` block then completes nothing more."""
        flow = self._complete_flow(status, error_message)
        if flow is None:
            raise self._no_completion()
        return self._complete_now(flow)

    def fail(self, error_message: str) -> JobResult:
        """Complete the job as `failed` (no credit is spent)."""
        return self.complete("failed", error_message=error_message)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                flow = self._complete_flow("completed", None)
                if flow is not None:
                    self._complete_now(flow)
                return
            flow = self._complete_flow("failed", self._describe(exc))
            if flow is not None:
                try:
                    self._complete_now(flow)
                except Exception as error:  # the block's own exception is the one to raise
                    self._failed_completion_failed(exc, error)
        finally:
            self.close()


class AsyncJobSession(_JobBase):
    """One SaaS-LiteLLM job with asyncio: `async with AsyncJobSession(deployment) as job:
    await job.chat(...)`. `http_client`: an `httpx.AsyncClient` to use (not closed here)."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(deployment, **options)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            transport=transport, follow_redirects=False, headers=_HEADERS
        )

    async def _run(self, flow: Flow[T], limits: CallLimits) -> T:
        try:
            result: T = await arun_flow(flow, self._client, limits=limits)
        except ProviderError as error:
            raise self._own(error) from None
        return result

    async def start(self) -> str:
        limits = self._limits()
        self.job_id = await self._run(self._create_flow(limits), limits)
        return self.job_id

    async def chat(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatResponse:
        limits = self._limits(timeout)
        return self._attributed(await self._run(self._call_flow(messages, model, params, limits), limits))

    def stream(
        self,
        messages: MessagesIn,
        *,
        model: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> AsyncJobStream:
        limits = self._limits(timeout)
        flow = self._stream_flow(messages, model, params, limits)
        out: list[Any] = []
        return AsyncJobStream(astream_flow(flow, self._client, out, limits=limits), self)

    async def _complete_now(self, flow: Flow[JobResult]) -> JobResult:
        try:
            self.result = await self._run(flow, self._limits())
        except Exception as error:
            self.complete_error = error
            raise
        return self.result

    async def complete(self, status: str = "completed", *, error_message: str | None = None) -> JobResult:
        flow = self._complete_flow(status, error_message)
        if flow is None:
            raise self._no_completion()
        return await self._complete_now(flow)

    async def fail(self, error_message: str) -> JobResult:
        return await self.complete("failed", error_message=error_message)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                flow = self._complete_flow("completed", None)
                if flow is not None:
                    await self._complete_now(flow)
                return
            flow = self._complete_flow("failed", self._describe(exc))
            if flow is not None:
                try:
                    await self._complete_now(flow)
                except Exception as error:  # the block's own exception is the one to raise
                    self._failed_completion_failed(exc, error)
        finally:
            await self.aclose()


class _StreamBase:
    def __init__(self, session: _JobBase) -> None:
        self._session = session
        self._chunks: list[str] = []
        self.finish_reason: str | None = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._chunks)

    def _observe(self, chunk: ChatChunk) -> ChatChunk:
        self._chunks.append(chunk.delta)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        return chunk


class JobStream(_StreamBase):
    """The chunks of one streamed call; use it as a context manager so the connection is closed."""

    def __init__(self, run: Generator[ChatChunk, None, Any], session: _JobBase) -> None:
        super().__init__(session)
        self._run = run

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> ChatChunk:
        try:
            return self._observe(next(self._run))
        except ProviderError as error:
            raise self._session._own(error) from None

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncJobStream(_StreamBase):
    """`async for` over the chunks of one streamed call; use `async with`."""

    def __init__(self, run: AsyncGenerator[ChatChunk, None], session: _JobBase) -> None:
        super().__init__(session)
        self._run = run

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            return self._observe(await anext(self._run))
        except ProviderError as error:
            raise self._session._own(error) from None

    async def aclose(self) -> None:
        await self._run.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
