# SPDX-License-Identifier: GPL-2.0
{
  description = "binfmt_ape: native execve() of Actually Portable Executables";

  # Whichever nixpkgs the user's flake registry names.
  inputs.nixpkgs.url = "nixpkgs";

  outputs =
    { self, nixpkgs }:
    let
      forAllSystems = nixpkgs.lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ];
    in
    {
      # The module for nixpkgs' newest kernel; for another, callPackage ./nix/package.nix with
      # that kernel's package set.
      packages = forAllSystems (system: {
        default = nixpkgs.legacyPackages.${system}.linuxPackages_latest.callPackage ./nix/package.nix { };
      });

      nixosModules.default = import ./nix/module.nix;
    };
}
