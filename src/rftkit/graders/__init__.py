"""③ Graders: turn a sample (and its dataset row) into a reward."""
