"""Embedded tasks with train and held-out splits and TRL-style scoring functions.

    from posttrain.tasks import get_task
    task = get_task("arithmetic")
    rows = task.rows("test", 200)         # [{"prompt": [...], "completion": [...], "answer": "632", ...}]
    task.score(prompts, completions, answer=[r["answer"] for r in rows])
"""

from __future__ import annotations

from posttrain.data.values import completion_text
from posttrain.errors import UserError
from posttrain.tasks import arithmetic, calculator, sentiment, sentiment_judge, web_form
from posttrain.tasks.base import Task

TASKS: dict[str, Task] = {task.name: task for task in (arithmetic.TASK, sentiment.TASK, sentiment_judge.TASK,
                                                          calculator.TASK, web_form.TASK)}


def get_task(name: str) -> Task:
    """The task called `name`; a UserError listing the valid names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "Task", "get_task", "completion_text"]
