# A package, so that test files with one basename in different folders (unit/losses/test_ppo.py,
# e2e/test_ppo.py) import as different modules. tests/ itself has no __init__.py: it stays on sys.path
# for `from conftest import ...` and `from tiny_tokenizers import ...`.
