"""Assembling a streamed answer into one message, for the trace."""

from __future__ import annotations

from typing import Any

JSONObject = dict[str, Any]


class StreamAssembler:
    """Joins ``chat.completion.chunk`` deltas into choices as they arrive."""

    def __init__(self) -> None:
        self.choices: dict[int, JSONObject] = {}
        self.model: str | None = None
        self.id: str | None = None

    def add(self, chunk: JSONObject) -> bool:
        """Add a chunk; return whether it carried content or a tool call."""
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        carried = False
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index") or 0)
            slot = self.choices.setdefault(
                index, {"content": "", "tool_calls": {}, "finish_reason": None}
            )
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                slot["content"] += content
                carried = True
            reasoning = delta.get("reasoning_content")
            if reasoning:
                slot["reasoning_content"] = (
                    slot.get("reasoning_content", "") + reasoning
                )
                carried = True
            for call in delta.get("tool_calls") or ():
                self._add_tool_call(slot["tool_calls"], call)
                carried = True
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
        return carried

    @staticmethod
    def _add_tool_call(calls: dict[int, JSONObject], delta: JSONObject) -> None:
        index = int(delta.get("index") or 0)
        call = calls.setdefault(
            index,
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        call["id"] = call["id"] or delta.get("id")
        function = delta.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]

    def text(self) -> str:
        """Return every choice's text and tool-call arguments joined together."""
        parts = []
        for slot in self.choices.values():
            parts.append(slot["content"])
            parts.append(slot.get("reasoning_content", ""))
            for call in slot["tool_calls"].values():
                parts.append(call["function"]["name"] + call["function"]["arguments"])
        return "".join(parts)

    def completion(self) -> JSONObject:
        """Return the answer so far as a ``chat.completion`` object."""
        choices = []
        for index in sorted(self.choices):
            slot = self.choices[index]
            message: JSONObject = {
                "role": "assistant",
                "content": slot["content"] or None,
            }
            if slot.get("reasoning_content"):
                message["reasoning_content"] = slot["reasoning_content"]
            if slot["tool_calls"]:
                message["tool_calls"] = [
                    slot["tool_calls"][i] for i in sorted(slot["tool_calls"])
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": slot["finish_reason"],
                }
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": choices,
        }
