"""The course kit: student copies made from this project, and a local autograder.

An instructor's copy is the full project. ``minires make-student-copy OUT --assignment
05`` writes a student's copy with the backward passes of the assignment's ops replaced
by stubs; ``minires grade 05 --project OUT`` runs the gradient checks and tests of those
ops on the student's code and prints a score and what is wrong, with no online service.
The assignments follow the tutorials (``ASSIGNMENTS``).
"""

from .assignments import ASSIGNMENTS, OPS, Assignment, Op, Target, get_assignment
from .grader import CheckResult, GradeReport, grade
from .student_copy import StudentCopyError, make_student_copy, stub_source, stubbed_targets

__all__ = ["ASSIGNMENTS", "OPS", "Assignment", "CheckResult", "GradeReport", "Op",
           "StudentCopyError", "Target", "get_assignment", "grade", "make_student_copy",
           "stub_source", "stubbed_targets"]
