# The appliance disk image as a NixOS configuration, built with nixpkgs'
# image.repart module: the partitions of image/repart.d and
# image/files/usr/lib/repart.d (see image/README.md).
#
#   # | GPT label      | type                    | content                                  | made
#   1 | ESP            | esp, vfat 256 MiB       | systemd-boot, kernel, initrd, a BLS entry | build
#   2 | archipel-store | usr, erofs (lz4hc)      | the system's Nix store, read-only         | build
#   3 | ARCHIPEL-CFG   | basic data, vfat 64 MiB | the provisioning file                     | build
#   4 | archipel-data  | var, LUKS2 + ext4, rest | /var: the node's data, the journal        | first boot
#
# Where the Debian image has a read-only root, NixOS builds its root (/etc,
# users, links) at every boot, so the root is a tmpfs and what is read-only
# by construction is the store: mounted at /usr and bound to /nix/store, as
# in nixpkgs' verity-store images (without dm-verity, like the Debian image).
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:

let
  efiArch = pkgs.stdenv.hostPlatform.efiArch;
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;
  kernelPath = "/EFI/archipel/kernel.efi";
  initrdPath = "/EFI/archipel/initrd.efi";
  # Basic data: laptops offer to open it.
  microsoftBasicData = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";
in
{
  imports = [ "${modulesPath}/image/repart.nix" ];

  options.archipel.image.provisioning = lib.mkOption {
    type = lib.types.nullOr lib.types.path;
    default = null;
    example = lib.literalExpression "./provisioning/examples/bzk";
    description = ''
      A folder (provisioning.toml and the files it names) to put on the
      ARCHIPEL-CFG partition, for an image that provisions itself. It passes
      through the Nix store, readable by every user of the build machine:
      for real setup tokens, copy the files onto the partition after
      writing the image instead.
    '';
  };

  config = {
    system.stateVersion = "26.05";
    system.image = {
      id = "archipel";
      inherit version;
    };

    services.archipel = {
      enable = true;
      provisioningFile = "/run/archipel/config/provisioning.toml";
      openFirewall = true;
    };

    image.repart = {
      name = "archipel";
      partitions = {
        "10-esp" = {
          contents = {
            "/EFI/BOOT/BOOT${lib.toUpper efiArch}.EFI".source =
              "${pkgs.systemd}/lib/systemd/boot/efi/systemd-boot${efiArch}.efi";
            "/loader/entries/archipel.conf".source = pkgs.writeText "archipel.conf" ''
              title Archipel ${version}
              linux ${kernelPath}
              initrd ${initrdPath}
              options init=${config.system.build.toplevel}/init ${toString config.boot.kernelParams}
            '';
            "${kernelPath}".source =
              "${config.boot.kernelPackages.kernel}/${config.system.boot.loader.kernelFile}";
            "${initrdPath}".source =
              "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";
          };
          # Room for two kernels and initrds later (A/B updates).
          repartConfig = {
            Type = "esp";
            Label = "ESP";
            Format = "vfat";
            SizeMinBytes = "256M";
            SizeMaxBytes = "256M";
          };
        };
        "20-store" = {
          storePaths = [ config.system.build.toplevel ];
          repartConfig = {
            Type = "usr";
            Label = "archipel-store";
            Format = "erofs";
            Compression = "lz4hc";
            Minimize = "best";
          };
        };
        # systemd-repart gives the FAT file system the GPT label cut to 11
        # characters (ARCHIPEL-CF); the appliance finds it by GPT label.
        "30-cfg" = {
          contents = lib.optionalAttrs (config.archipel.image.provisioning != null) {
            "/".source = config.archipel.image.provisioning;
          };
          repartConfig = {
            Type = microsoftBasicData;
            Label = "ARCHIPEL-CFG";
            Format = "vfat";
            SizeMinBytes = "64M";
            SizeMaxBytes = "64M";
          };
        };
      };
    };

    fileSystems = {
      "/" = {
        device = "none";
        fsType = "tmpfs";
        options = [ "mode=0755" ];
      };
      "/usr" = {
        device = "/dev/disk/by-partlabel/archipel-store";
        fsType = "erofs";
        options = [ "ro" ];
      };
      "/nix/store" = {
        device = "/usr/nix/store";
        fsType = "none";
        options = [
          "bind"
          "ro"
        ];
      };
      "/var" = {
        device = "/dev/mapper/archipel-data";
        fsType = "ext4";
        options = [ "noatime" ];
      };
      # Editable from a laptop. nofail: the appliance still boots (and says
      # so on the console) without it.
      "/run/archipel/config" = {
        device = "/dev/disk/by-partlabel/ARCHIPEL-CFG";
        fsType = "vfat";
        options = [
          "rw"
          "nofail"
          "noexec"
          "nosuid"
          "nodev"
          "flush"
          "umask=0077"
        ];
      };
    };

    # The data partition, made at first boot in the free space after the
    # image's partitions and encrypted. Encrypt=key-file without a key file
    # enrols an empty passphrase, which crypttab tries: the Debian image's
    # archipel-seal.service (recovery key, TPM2) is not here yet.
    systemd.repart.partitions."50-data" = {
      Type = "var";
      Label = "archipel-data";
      Format = "ext4";
      Encrypt = "key-file";
      SizeMinBytes = "1G";
      FactoryReset = true;
    };

    boot = {
      loader.grub.enable = false;
      initrd = {
        systemd = {
          enable = true;
          # /var is needed for boot, so its partition is made in the initrd.
          repart.enable = true;
          initrdBin = [ pkgs.e2fsprogs ];
          # The root is a tmpfs: systemd-repart finds the disk through /usr.
          services.systemd-repart = {
            requires = [ "sysroot-usr.mount" ];
            after = [ "sysroot-usr.mount" ];
          };
        };
        luks.devices.archipel-data = {
          device = "/dev/disk/by-partlabel/archipel-data";
          allowDiscards = true;
          crypttabExtraOpts = [
            "tpm2-device=auto"
            "try-empty-password"
          ];
        };
        supportedFilesystems = [
          "erofs"
          "ext4"
          "vfat"
        ];
        availableKernelModules = [
          "virtio_pci"
          "virtio_blk"
          "virtio_scsi"
          "nvme"
          "ahci"
          "sd_mod"
          "xhci_pci"
          "usb_storage"
        ];
      };
      # The serial console last, so it is /dev/console; the machine ID from
      # the firmware's UUID, as the root cannot keep one.
      kernelParams = [
        "console=tty0"
        "console=ttyS0,115200"
        "systemd.firstboot=no"
        "systemd.machine_id=firmware"
        "panic=10"
      ];
    };

    # Provisioning sets the host name and writes the network and the time
    # servers to /etc/archipel/system/; until its first apply, DHCP on
    # every wired interface.
    networking = {
      hostName = "archipel";
      useNetworkd = true;
      useDHCP = false;
      nftables.enable = true;
    };
    services.resolved.enable = true;
    systemd.network.networks."80-wired" = {
      matchConfig.Type = "ether";
      networkConfig.DHCP = "yes";
    };
    environment.etc = {
      "systemd/network/20-archipel.network".source = "/etc/archipel/system/20-archipel.network";
      "systemd/timesyncd.conf.d/50-archipel.conf".source = "/etc/archipel/system/50-archipel-time.conf";
      # The Debian image's: no LLMNR or mDNS; the journal on the data partition.
      "systemd/resolved.conf.d/10-archipel.conf".source =
        ../image/files/etc/systemd/resolved.conf.d/10-archipel.conf;
      "systemd/journald.conf.d/10-archipel.conf".source =
        ../image/files/etc/systemd/journald.conf.d/10-archipel.conf;
    };

    # An appliance: no Nix, no rebuilds, no logins.
    nix.enable = false;
    system.switch.enable = false;
    documentation.enable = false;
    users.mutableUsers = false;
    users.allowNoPasswordLogin = true;
    # /usr is the read-only store partition.
    system.activationScripts.usrbinenv = lib.mkForce "";
  };
}
