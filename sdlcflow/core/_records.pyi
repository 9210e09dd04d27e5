from typing import Any, TypeVar

T = TypeVar("T")

def build(cls: type[T], fields: dict[str, Any]) -> T: ...
