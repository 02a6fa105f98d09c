#!/usr/bin/env bash
# Installs a CUDA 13.2 compiler toolchain (nvcc, headers, cudart, CCCL, NVVM) from
# PyPI wheels into a Python virtual environment, so that candle's CUDA backend
# (`cargo check --features cuda`) can be built on a machine without a GPU or a
# system-wide CUDA install. Nothing here needs a GPU or a driver.
#
# Usage:
#   source scripts/install-cuda-toolchain.sh   # installs if needed, exports into this shell
#   bash scripts/install-cuda-toolchain.sh     # installs if needed, prints `export ...` lines
#   eval "$(bash scripts/install-cuda-toolchain.sh)"
#
# Environment:
#   METAADD_CUDA_VENV   venv location (default: $HOME/.cache/metaadd-cuda-venv)
#   METAADD_PYTHON      python used to create the venv (default: python3)
#   CUDA_COMPUTE_CAP    GPU architecture to compile kernels for (default: 90)
#
# Exports: CUDA_HOME, CUDA_PATH, PATH (+ $CUDA_HOME/bin), CUDA_COMPUTE_CAP.
# The install is skipped when the venv already has a working nvcc of release 13.2.
#
# When sourced, no shell options of the caller are changed: the strict-mode work
# (set -euo pipefail) runs in a subshell, and failures are reported with a
# non-zero status from `source` instead of killing the caller's shell.

_metaadd_cuda_install() (
    set -euo pipefail

    local venv="${METAADD_CUDA_VENV:-$HOME/.cache/metaadd-cuda-venv}"
    local python="${METAADD_PYTHON:-python3}"
    local want_release="13.2"
    local -a packages=(
        "nvidia-cuda-nvcc==13.2.*"
        "nvidia-cuda-crt==13.2.*"
        "nvidia-cuda-runtime==13.2.*"
        "nvidia-cuda-cccl==13.2.*"
        "nvidia-nvvm==13.2.*"
    )

    log() { echo "install-cuda-toolchain: $*" >&2; }
    die() { log "ERROR: $*"; exit 1; }

    # Prints the CUDA_HOME of the venv (<site-packages>/nvidia/cu13), computed by the
    # venv's own python so the pythonX.Y directory is never guessed.
    cuda_home_of_venv() {
        local site
        [[ -x "$venv/bin/python" ]] || return 1
        site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
        [[ -n "$site" ]] || return 1
        echo "$site/nvidia/cu13"
    }

    # True when $1/bin/nvcc runs and reports the wanted release.
    nvcc_ok() {
        local home="$1" out
        [[ -x "$home/bin/nvcc" ]] || return 1
        out="$("$home/bin/nvcc" --version 2>/dev/null)" || return 1
        grep -q "release ${want_release}," <<<"$out"
    }

    # True when the headers/tools candle-kernels needs are present.
    toolkit_complete() {
        local home="$1" f
        for f in include/cuda_runtime.h include/cuda_fp16.h include/cuda_bf16.h \
                 include/crt/host_config.h include/cccl/cub/cub.cuh \
                 nvvm/bin/cicc bin/ptxas bin/fatbinary; do
            [[ -e "$home/$f" ]] || { log "missing $home/$f"; return 1; }
        done
    }

    local cuda_home=""
    if cuda_home="$(cuda_home_of_venv 2>/dev/null)" && nvcc_ok "$cuda_home" \
        && toolkit_complete "$cuda_home" 2>/dev/null; then
        log "nvcc already installed in $venv, skipping install"
    else
        command -v "$python" >/dev/null 2>&1 || die "'$python' not found (set METAADD_PYTHON)"
        if [[ ! -x "$venv/bin/python" ]]; then
            log "creating venv $venv"
            mkdir -p "$(dirname "$venv")" || die "cannot create $(dirname "$venv")"
            "$python" -m venv "$venv" || die "'$python -m venv $venv' failed (on Debian: apt-get install python3-venv)"
        fi
        log "installing ${packages[*]} into $venv"
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "${packages[@]}" \
            || die "pip install of the CUDA wheels failed (is PyPI reachable?)"
        cuda_home="$(cuda_home_of_venv)" || die "cannot determine site-packages of $venv"
        [[ -d "$cuda_home" ]] || die "expected CUDA_HOME $cuda_home does not exist after install"
        toolkit_complete "$cuda_home" || die "CUDA toolkit in $cuda_home is incomplete"
        nvcc_ok "$cuda_home" || die "$cuda_home/bin/nvcc does not run or is not release $want_release: $("$cuda_home/bin/nvcc" --version 2>&1 || true)"
        log "installed: $("$cuda_home/bin/nvcc" --version | grep release)"
    fi
    echo "$cuda_home"
)

_metaadd_cuda_main() {
    local cuda_home
    cuda_home="$(_metaadd_cuda_install)" || return 1
    [[ -n "$cuda_home" ]] || { echo "install-cuda-toolchain: ERROR: no CUDA_HOME found" >&2; return 1; }
    export CUDA_HOME="$cuda_home"
    export CUDA_PATH="$cuda_home"
    case ":$PATH:" in
        *":$cuda_home/bin:"*) ;;
        *) export PATH="$cuda_home/bin:$PATH" ;;
    esac
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export into the caller's shell; report failure through the status
    # of `source` and never `exit` the caller.
    if _metaadd_cuda_main; then
        unset -f _metaadd_cuda_install _metaadd_cuda_main
        echo "install-cuda-toolchain: CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP" >&2
        return 0
    else
        unset -f _metaadd_cuda_install _metaadd_cuda_main
        return 1
    fi
else
    set -euo pipefail
    _metaadd_cuda_main
    printf 'export CUDA_HOME=%q\n' "$CUDA_HOME"
    printf 'export CUDA_PATH=%q\n' "$CUDA_PATH"
    # shellcheck disable=SC2016  # $PATH is expanded by whoever evals this line
    printf 'export PATH=%q:"$PATH"\n' "$CUDA_HOME/bin"
    printf 'export CUDA_COMPUTE_CAP=%q\n' "$CUDA_COMPUTE_CAP"
fi
