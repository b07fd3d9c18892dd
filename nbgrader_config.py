"""nbgrader configuration for the course.

solutions/<assignment>/  (instructor sources, with solutions)  --generate_assignment-->
notebooks/<assignment>/  (learner versions, committed).
The gradebook database lives in .nbgrader/ (ignored by git), never in the repository.
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader)

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "backprop-from-scratch"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
os.makedirs(os.path.join(ROOT, ".nbgrader"), exist_ok=True)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, ".nbgrader", "gradebook.db")

# What the learner sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding. `make grade` (scripts/grade.py) runs each job in a private course with its own
# config (integrity guard, stripped submissions); these settings apply when nbgrader is run by
# hand (formgrader, `nbgrader autograde`). Deleted test cells are put back and score as run.
c.OverwriteCells.add_missing_cells = True
# A stuck cell must not hang the whole run.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
