# gembench — two commands do everything: `make run` (the main job) and `make test`.
# Each creates .venv when missing and installs the project with pinned versions.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gembench-installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[test,cf,content,render]'
	@# RecBole's metadata pins ray<=2.6.3 (no wheel for this stack): install it without
	@# deps; its real runtime deps come from the cf extra above (see docs/recbole.md)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-c constraints.txt recbole==1.2.1
	@touch $(STAMP)

install: $(STAMP)

## the main job on the synthetic small data set: every baseline on the ranking tracks
## (leave-last-out, then cold-start: held-out items unseen in training, where content
## methods count), the rerank protocol (itemknn's own top 10, reordered by other methods;
## then ImageGem's positive-inserted variant with its reversed-first-stage control;
## vlm-rerank needs images and weights, so it is opt-in), the preference
## track (every k of the few-shot curve), the lora-edit track (gain-vs-fidelity curve) and
## seeds 1 and 2 of the main baselines (each tuned on its own seed; with seed 0's records,
## the mean ± sd over 3 seeds tables); leaderboards rebuilt after each step
run: $(STAMP)
	$(BIN)/gembench run --dataset synthetic-small
	$(BIN)/gembench run --dataset synthetic-small --protocol cold-start
	$(BIN)/gembench run --dataset synthetic-small --protocol rerank --first-stage itemknn \
		--methods random,popularity,itemknn,userknn,clip-mean,hybrid,oracle,reversed-first-stage
	$(BIN)/gembench run --dataset synthetic-small --protocol rerank --first-stage itemknn \
		--candidates inserted --methods random,itemknn,oracle,reversed-first-stage
	$(BIN)/gembench run --dataset synthetic-small --tracks preference
	$(BIN)/gembench edit run --dataset synthetic-small
	$(BIN)/gembench run --dataset synthetic-small --seeds 1,2 \
		--methods random,popularity,itemknn,userknn,als,bpr,oracle

## the test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data results .pytest_cache
