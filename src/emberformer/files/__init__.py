"""Files written safely: atomic writes, temporary folders, and locks that a killed process does not leave behind."""
