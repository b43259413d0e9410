# SPDX-License-Identifier: GPL-2.0
#
# binfmt_ape for a NixOS kernel: `config.boot.kernelPackages.callPackage ./nix/package.nix { }`
# (nix/module.nix does that). Built the way nixpkgs builds out-of-tree Rust modules, against
# kernel.dev, whose build tree carries the kernel's Rust metadata; the kernel's own rustc is in
# kernel.moduleBuildDependencies, so the build runs in kernel-Rust mode. The bundled mode
# (kernels without Rust) would need the series' source and rust-src here too: not wired in
# yet, hence `broken` without Rust.
{
  lib,
  kernel,
  kernelModuleMakeFlags ? [ ],
}:
let
  # The version is debian/changelog's, so the two never drift.
  changelog = lib.head (lib.splitString "\n" (builtins.readFile ../debian/changelog));
  version = lib.head (builtins.match "binfmt-ape \\(([^)]*)\\).*" changelog);
in
kernel.stdenv.mkDerivation {
  pname = "binfmt-ape";
  inherit version;

  src = lib.cleanSource ../.;

  nativeBuildInputs = kernel.moduleBuildDependencies;

  # make first runs scripts/preflight.sh, a bash script.
  postPatch = ''
    patchShebangs scripts/preflight.sh
  '';

  makeFlags = kernelModuleMakeFlags ++ [
    "KDIR=${kernel.dev}/lib/modules/${kernel.modDirVersion}/build"
    "MODE=kernel"
  ];
  buildFlags = [ "modules" ];

  installFlags = [ "INSTALL_MOD_PATH=${placeholder "out"}" ];
  installTargets = [ "modules_install" ];

  meta = {
    description = "Native execve() of Actually Portable Executables (Cosmopolitan's APE format)";
    license = lib.licenses.gpl2Only;
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    broken = kernel.kernelOlder "6.12" || !kernel.withRust;
  };
}
