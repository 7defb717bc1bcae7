"""Token-step continuous batching for one sequence model version (task "sequence").

The loop, queues, admission, cancellation, time limits and load cap are ModelScheduler's; what one
"step" of the batch means differs: ONE refinement step of each request's current token. Requests in the
batch are at different tokens of their answers (different prefix lengths) and at different steps of
those tokens, so a request that needs 5 tokens never waits for one that needs 40. For each request:

1. On its first step (on the model's thread, or on the event loop by the idle fast path) its input is
   encoded into its input cache; its prefix cache is allocated at the bundle's output limit: K x slots x
   heads x max_tokens x head_dim keys and as many values, K the steps the cache keeps (`prefix_steps`,
   N_sup unless the bundle says fewer; bounded memory per request; per model, max_batch requests hold one).
2. Each step feeds the step graph with the request's input cache, the token emitted before the current
   one, its position, its y and z, and the prefix cache entries of the step the token is at, or of step
   K past it (rows padded to the batch's longest input and prefix, rounded up to whole blocks, masked).
3. The token's new entries of a step up to K stand for it at this step and every later one until it
   refines on; when its halting rule stops it (`stop_reason` with the request's budget applied to each
   token: halting head, an answer its last step left unchanged where the bundle's
   `sequence.halt_when_unchanged` says so, max_steps, the load cap), its most probable token is emitted
   and its entries are committed.
4. The request ends when it emits the end mark (HaltReason.HALTED) or reaches the output limit
   (MAX_STEPS), or at a time limit (deadline, time budget, shutdown) with the text emitted so far, checked
   after every step whether or not the step emitted a token; an
   answer any of whose tokens the load cap cut short ends with LOAD.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from trm_bundle.probabilities import sigmoid, softmax
from trm_service.runtime.sequence_session import SequenceSession, SourceEncoding, TokenStepOutputs, padded_length
from trm_service.runtime.session import StepStopped
from trm_service.scheduler.halting import HaltReason, stop_reason, time_limit_reason
from trm_service.scheduler.model_scheduler import STEP_TIME_SAFETY, ModelScheduler, PlannedCall
from trm_service.scheduler.ticket import StepResult, Ticket, TokenProgress

_TOKEN_ENDS = (HaltReason.HALTED, HaltReason.MAX_STEPS, HaltReason.LOAD, HaltReason.VERIFIED)


@dataclass(eq=False)
class Decoding:
    """One request's answer in progress: its caches, the tokens emitted, and its current token's state."""

    source: SourceEncoding
    keys: np.ndarray  # the prefix cache: [cache_steps, slots, heads, max_tokens, head_dim]
    values: np.ndarray
    y: np.ndarray  # the current token's states [d]
    z: np.ndarray
    pending_keys: np.ndarray  # the current token's entries by step: [cache_steps, slots, heads, head_dim]
    pending_values: np.ndarray
    emitted: list[int] = field(default_factory=list)
    token_step: int = 0  # steps the current token has taken
    token_answer: int = -1  # the current token's most probable token after its last step (-1: no step yet)
    emitted_steps: int = 0
    confidence: float = 1.0  # the product of the emitted tokens' probabilities
    load_capped: bool = False


class SequenceScheduler(ModelScheduler):
    """Runs the refinement steps of every request of one sequence model version, batched step by step."""

    _session: SequenceSession
    PARKS_REQUESTS = False  # a parked request would keep its prefix cache: memory beyond one per slot
    # QA: the step limit of a request (every token of the output limit at its step limit: 512 steps for
    # code-dictation, whose requests run 20-80) and a step of 64 scaled from a lone one (454 ms planned, 12-22 ms
    # taken) refused 58 of 150 calls of a burst on a fresh server as 9-232 s of waiting: every answered call ended
    # within 1.1 s. Until a request has finished and a near-full batch's step is timed, a full batch admits
    REFUSES_ON_PRIORS = False

    def _most_steps(self, ticket: Ticket) -> int:
        """The most refinement steps `ticket` may run: every token of the output limit at its step limit."""
        return ticket.budget.max_steps * self._session.spec.max_tokens

    def _batch_inputs(self, batch: list[Ticket]) -> None:  # type: ignore[override]
        """Nothing to prepare on the loop thread: `_run_all` encodes new inputs and feeds the step there."""
        return None

    def _run_all(self, runs: list[PlannedCall], inputs: list[None]) -> tuple[list[TokenStepOutputs | None], float]:  # type: ignore[override]
        """On the model's thread: per planned call, encode the inputs that have no cache yet, then run one
        refinement step of every request of the call (None for a call stopped because all of its
        requests were cancelled); and the seconds the calls took."""
        outputs: list[TokenStepOutputs | None] = []
        started = time.perf_counter()
        for run in runs:
            try:
                new = [ticket for ticket in run.tickets if ticket.decoding is None]
                if new:
                    encoded = self._session.encode([ticket.tokens for ticket in new], run.handle)
                    for ticket, source in zip(new, encoded, strict=True):
                        ticket.decoding = self._start(source)
                outputs.append(self._session.step(self._feed(run.tickets), run.handle))
            except StepStopped:
                outputs.append(None)
        return outputs, time.perf_counter() - started

    def _start(self, source: SourceEncoding) -> Decoding:
        """A request's decoding state at its first step: its input cache, and its prefix cache allocated at
        the output limit."""
        spec, session = self._session.spec, self._session
        cache = (session.cache_steps, spec.slots, spec.heads, spec.max_tokens, spec.head_dim)
        entries = (session.cache_steps, spec.slots, spec.heads, spec.head_dim)
        return Decoding(source=source, keys=np.zeros(cache, np.float32), values=np.zeros(cache, np.float32),
                        y=np.zeros(session.hidden_size, np.float32), z=np.zeros(session.hidden_size, np.float32),
                        pending_keys=np.zeros(entries, np.float32), pending_values=np.zeros(entries, np.float32))

    def _feed(self, batch: list[Ticket]) -> dict[str, np.ndarray]:
        """The step graph's inputs for `batch`, padded to its longest input and prefix, in whole blocks."""
        spec, session = self._session.spec, self._session
        states: list[Decoding] = [ticket.decoding for ticket in batch]
        rows = len(batch)
        source_len = session.source_length(max(len(state.source.ids) for state in states))
        prefix_len = padded_length(max(len(state.emitted) for state in states) + 1) - 1  # + the token's own entry
        source = np.full((rows, source_len), session.pad_id, np.int64)
        cache = (rows, spec.layers, spec.heads, source_len, spec.head_dim)
        source_keys, source_values = np.zeros(cache, np.float32), np.zeros(cache, np.float32)
        pointer_keys = np.zeros((rows, source_len, session.hidden_size), np.float32)
        prefix = (rows, spec.slots, spec.heads, prefix_len, spec.head_dim)
        prefix_keys, prefix_values = np.zeros(prefix, np.float32), np.zeros(prefix, np.float32)
        prefix_mask = np.zeros((rows, prefix_len), bool)
        last_entry = session.cache_steps - 1
        for row, state in enumerate(states):
            encoding, length, emitted = state.source, len(state.source.ids), len(state.emitted)
            source[row, :length] = encoding.ids
            source_keys[row, :, :, :length], source_values[row, :, :, :length] = encoding.keys, encoding.values
            pointer_keys[row, :length] = encoding.pointer_keys
            entry = min(state.token_step, last_entry)
            prefix_keys[row, :, :, :emitted] = state.keys[entry, :, :, :emitted]
            prefix_values[row, :, :, :emitted] = state.values[entry, :, :, :emitted]
            prefix_mask[row, :emitted] = True
        return {
            "source": source, "source_keys": source_keys, "source_values": source_values,
            "pointer_keys": pointer_keys,
            "previous": np.array([s.emitted[-1] if s.emitted else spec.bos_id for s in states], np.int64),
            "position": np.array([len(s.emitted) for s in states], np.int64),
            "y": np.stack([s.y for s in states]), "z": np.stack([s.z for s in states]),
            "prefix_keys": prefix_keys, "prefix_values": prefix_values, "prefix_mask": prefix_mask,
        }

    def _record_step(self, calls: list[tuple[list[Ticket], TokenStepOutputs]], now: float) -> None:  # type: ignore[override]
        """Publish the step of every request of the step's calls. The step cap is computed once for the whole
        step; it ends a token's refinement, not the request, which goes on with its next token."""
        next_step_s = self.expected_step_s * STEP_TIME_SAFETY
        load_cap = self.load_step_cap()
        stopped = set()
        for batch, outputs in calls:
            halt_probability = sigmoid(outputs.halt_logit)
            for row, ticket in enumerate(batch):
                if ticket.cancelled:
                    continue
                state: Decoding = ticket.decoding
                token_index, step = len(state.emitted), state.token_step
                state.y, state.z = outputs.y_next[row], outputs.z_next[row]
                if step < self._session.cache_steps:
                    state.pending_keys[step:] = outputs.step_keys[row]
                    state.pending_values[step:] = outputs.step_values[row]
                state.token_step += 1
                answer = int(outputs.log_probs[row].argmax())
                unchanged = self._session.spec.halt_when_unchanged and answer == state.token_answer
                state.token_answer = answer
                limits = self._limits(ticket)
                reason = stop_reason(steps_done=state.token_step, halt_probability=float(halt_probability[row]),
                                     budget=ticket.budget, now=now, next_step_s=next_step_s,
                                     limits=limits, unchanged=unchanged, load_cap=load_cap)
                token_emitted = reason in _TOKEN_ENDS
                final = None
                if token_emitted:
                    # the answer goes on to its next token only if a step of it fits the time limits
                    probability = float(softmax(outputs.log_probs[row])[answer])
                    final = self._emit(state, answer, probability, reason) or time_limit_reason(
                        now=now, next_step_s=next_step_s, limits=limits)
                elif reason is not None:
                    final = reason  # a time limit: the answer is the text emitted so far
                if final is not None:
                    stopped.add(ticket)
                ticket.publish(StepResult(
                    step=ticket.steps_done + 1, logits=outputs.log_probs[row].copy(),
                    halt_probability=float(halt_probability[row]), elapsed_ms=(now - ticket.arrival) * 1000.0,
                    halt_reason=final,
                    progress=TokenProgress(token_index=token_index, token_step=step + 1, emitted=tuple(state.emitted),
                                           token_emitted=token_emitted, emitted_steps=state.emitted_steps,
                                           confidence=state.confidence)))
        self._retire(stopped)

    def _emit(self, state: Decoding, token: int, probability: float, reason: HaltReason) -> HaltReason | None:
        """Emit the current token (of `probability` at this step) and commit its entries; the request's final reason
        if the answer ended."""
        spec = self._session.spec
        position = len(state.emitted)
        state.keys[:, :, :, position], state.values[:, :, :, position] = state.pending_keys, state.pending_values
        state.emitted.append(token)
        state.emitted_steps += state.token_step
        state.confidence *= probability
        state.load_capped |= reason is HaltReason.LOAD
        state.token_step, state.token_answer = 0, -1
        state.y, state.z = np.zeros_like(state.y), np.zeros_like(state.z)
        if token != spec.eos_id and len(state.emitted) < spec.max_tokens:
            return None
        if token != spec.eos_id:  # cut at the output limit: incomplete, however its tokens were refined
            return HaltReason.MAX_STEPS
        return HaltReason.LOAD if state.load_capped else HaltReason.HALTED
