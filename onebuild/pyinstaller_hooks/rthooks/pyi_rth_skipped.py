# Stands in for PyInstaller's run-time hooks that the init does not need (see ../rthooks.dat).
