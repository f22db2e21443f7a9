{
  description = "Archipel: a sovereign chat-and-archive appliance (Matrix homeserver, archive vault, backups)";

  # rust-version 1.93 and edition 2024 (Cargo.toml) need a nixpkgs whose
  # rustc is at least 1.93.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      # The appliance is x86_64 UEFI only, as is the Debian image.
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
    in
    {
      packages.${system} = {
        archipel = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${system}.archipel;
        # nix build .#image -> result/archipel_<version>.raw
        image = self.nixosConfigurations.appliance.config.system.build.image;
      };

      overlays.default = final: _prev: {
        archipel = final.callPackage ./nix/package.nix { };
      };

      nixosModules = {
        archipel = ./nix/module.nix;
        default = self.nixosModules.archipel;
      };

      nixosConfigurations.appliance = nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.archipel
          ./nix/image.nix
          { services.archipel.package = self.packages.${system}.archipel; }
        ];
      };

      # `nix flake check` also evaluates nixosConfigurations.appliance.
      checks.${system}.archipel = self.packages.${system}.archipel;
    };
}
