"""Guardrail policies as written in the configuration file.

A policy names the scanners that check a request before it goes upstream
(``input``) and the answer before it reaches the caller (``output``). Each
scanner has a type, an action, a threshold, what to do when it fails
(``on_error``) and its own settings, written beside the common ones::

    guardrails:
      default: standard
      policies:
        standard:
          input:
            - {type: pii, action: pseudonymize, on_error: closed}
            - {type: injection, action: block, threshold: 0.5}
          output:
            - {type: system_prompt_leak, action: block}
      attach:
        keys: {support-bot: strict}
        models: {gpt-4o: standard}

The policy of a request is the first that attaches, from the most specific:
key, prompt, team, model group, then ``default``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["block", "redact", "pseudonymize", "flag", "escalate"]
OnError = Literal["open", "closed"]

# Actions that rewrite spans of the text; they need a scanner that finds spans.
SPAN_ACTIONS = ("redact", "pseudonymize")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScannerSpec(BaseModel):
    """One scanner in a policy: the common fields plus the type's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    action: Action = "block"
    # Scores at or above this trigger the action.
    threshold: float = Field(0.5, ge=0, le=1)
    # closed: a scanner that fails acts as if it had triggered (a block
    # blocks); open: the request goes on and the failure is traced.
    on_error: OnError = "closed"
    # A name for verdicts and metrics when a policy has two of one type.
    name: str | None = None

    def settings(self) -> dict[str, Any]:
        """Return the type's own settings, without the common fields."""
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        return self.name or self.type


class PolicyConfig(_Strict):
    """The scanners of one named policy."""

    input: list[ScannerSpec] = Field(default_factory=list)
    output: list[ScannerSpec] = Field(default_factory=list)
    # Characters of a streamed answer held back while output scanners look at
    # them; a match shorter than this is cut before any of it is sent.
    stream_window: int = Field(128, ge=16, le=65536)


class AttachConfig(_Strict):
    """Which policy applies to which key, prompt, team or model group."""

    keys: dict[str, str] = Field(default_factory=dict)
    prompts: dict[str, str] = Field(default_factory=dict)
    teams: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)


class GuardrailsConfig(_Strict):
    """Named policies, where they attach and the default."""

    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    attach: AttachConfig = AttachConfig()
    # The policy of requests nothing else attaches to; empty for none.
    default: str | None = None
    # The PII scanner settings that redact stored payloads of keys whose
    # payload mode is ``redacted`` when their policy has no PII scanner.
    stored_pii: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_names(self) -> GuardrailsConfig:
        from keelway.guardrails.registry import SCANNERS, stages

        names = set(self.policies)
        if self.default and self.default not in names:
            raise ValueError(f"default: no policy named {self.default!r}")
        for where, mapping in self.attach.model_dump().items():
            for target, policy in mapping.items():
                if policy not in names:
                    raise ValueError(
                        f"attach.{where}.{target}: no policy named {policy!r}"
                    )
        for name, policy in self.policies.items():
            for stage in ("input", "output"):
                seen: set[str] = set()
                for index, spec in enumerate(getattr(policy, stage)):
                    path = f"policies.{name}.{stage}[{index}]"
                    if spec.type not in SCANNERS:
                        known = ", ".join(sorted(SCANNERS))
                        raise ValueError(
                            f"{path}.type: unknown scanner {spec.type!r};"
                            f" known types: {known}"
                        )
                    if stage not in stages(spec.type):
                        raise ValueError(
                            f"{path}.type: {spec.type!r} does not run on {stage}"
                        )
                    if spec.label in seen:
                        raise ValueError(
                            f"{path}.name: two {stage} scanners are named"
                            f" {spec.label!r}; give one a name"
                        )
                    seen.add(spec.label)
        return self
