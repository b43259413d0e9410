# SPDX-License-Identifier: GPL-2.0
#
# NixOS: `boot.binfmtApe.enable = true;` builds binfmt_ape for the configured kernel and loads
# it at boot.
{
  config,
  lib,
  ...
}:
let
  cfg = config.boot.binfmtApe;
in
{
  options.boot.binfmtApe = {
    enable = lib.mkEnableOption "binfmt_ape, native execve() of Actually Portable Executables";
  };

  config = lib.mkIf cfg.enable {
    boot.extraModulePackages = [ (config.boot.kernelPackages.callPackage ./package.nix { }) ];
    boot.kernelModules = [ "binfmt_ape" ];
  };
}
