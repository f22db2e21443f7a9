# services.archipel: an Archipel node on NixOS.
#
# Two ways to configure it, as on the appliance or by hand:
# - `settings`: the node's archipel.toml (every key:
#   appliance/archipel.example.toml), rendered into the store;
# - `provisioningFile`: a provisioning file that `archipel-provision.service`
#   applies at every boot, as the appliance does. Provisioning writes the
#   node's configuration, TLS files and archive key under /etc/archipel,
#   which points to /var/lib/archipel-config; `settings` is then unused.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;

  cfg = config.services.archipel;
  settingsFormat = pkgs.formats.toml { };
  exe = lib.getExe cfg.package;

  # What provisioning writes, or the archive key; the node only reads it.
  configDir = "/var/lib/archipel-config";
  provisioned = cfg.provisioningFile != null;

  # TOML has no null: a key left at null is a key left out (its default).
  configFile = settingsFormat.generate "archipel.toml" (
    lib.filterAttrsRecursive (_: value: value != null) cfg.settings
  );
  configPath = if provisioned then "/etc/archipel/archipel.toml" else configFile;

  portOf = address: lib.toInt (lib.last (lib.splitString ":" address));
  # What provisioning configures: HTTPS for clients, and federation.
  listenPorts =
    if provisioned then
      [
        443
        8448
      ]
    else
      map portOf (
        lib.filter (address: address != null) [
          cfg.settings.tls.listen
          cfg.settings.federation.listen
        ]
      );

  keyFile = cfg.settings.vault.key_file;
in
{
  options.services.archipel = {
    enable = lib.mkEnableOption "Archipel, a Matrix homeserver with an archive vault";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The package that provides the `archipel` binary.";
    };

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/archipel";
      description = ''
        The node's data: its databases, keys and media. It becomes
        `settings.node.data_dir`. Provisioning always uses
        /var/lib/archipel.
      '';
    };

    settings = mkOption {
      description = ''
        The node's configuration, written as archipel.toml. Every key is
        optional except `homeserver.server_name` here and
        `vault.key_file`; see appliance/archipel.example.toml for all of
        them and their defaults. Unknown keys stop the node at start.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          homeserver.server_name = "chat.minbzk.example";
          homeserver.public_base_url = "https://chat.minbzk.example";
          tls.listen = "0.0.0.0:443";
          tls.acme.directory = "https://acme.minbzk.example/directory";
          backup.recipients = [ "age1..." ];
        }
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          node.listen = mkOption {
            type = types.str;
            default = "127.0.0.1:8008";
            description = "The client API over plain HTTP: loopback only.";
          };
          homeserver.server_name = mkOption {
            type = types.str;
            example = "chat.minbzk.example";
            description = "The name in every user and room ID. Fixed at first start.";
          };
          tls.listen = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "0.0.0.0:443";
            description = ''
              The client API over HTTPS, with certificate files
              (`tls.certificate`, `tls.private_key`) or ACME (`tls.acme`).
            '';
          };
          federation.listen = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "0.0.0.0:8448";
            description = ''
              The federation listener (TLS only), for the servers under
              `federation.peers` and nobody else.
            '';
          };
          vault.key_file = mkOption {
            type = types.str;
            default = "${configDir}/vault.key";
            description = ''
              The archive's key. Without it nothing archived can be read
              back: keep a copy offline.
            '';
          };
        };
      };
    };

    generateVaultKey = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Make the archive's key (`settings.vault.key_file`) before the first
        start if it does not exist, as provisioning does. Its folder must be
        writable by the `archipel` user (the default one is).
      '';
    };

    provisioningFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/archipel/config/provisioning.toml";
      description = ''
        A provisioning file on the machine (not in the store: its paths are
        relative to its folder, and it may hold setup tokens), applied at
        every boot by `archipel-provision.service`. It writes the node's
        configuration, so `settings` is not used. The host name, network
        and time servers it writes go to /etc/archipel/system/; this module
        does not use them (the image configuration does).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the ports of the HTTPS and federation listeners
        (`settings.tls.listen`, `settings.federation.listen`; 443 and 8448
        with a provisioning file).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = provisioned -> cfg.dataDir == "/var/lib/archipel";
        message = "services.archipel.dataDir: provisioning writes the node's data to /var/lib/archipel.";
      }
      {
        assertion = provisioned -> lib.hasPrefix "/" cfg.provisioningFile;
        message = "services.archipel.provisioningFile must be an absolute path on the machine.";
      }
    ];

    services.archipel.settings.node.data_dir = cfg.dataDir;

    users.users.archipel = {
      isSystemUser = true;
      group = "archipel";
      home = cfg.dataDir;
      description = "Archipel homeserver";
    };
    users.groups.archipel = { };

    # Others may pass through the configuration folder but not list it:
    # systemd-networkd and systemd-timesyncd read what provisioning writes
    # under system/; the configuration and the keys keep their own modes.
    systemd.tmpfiles.rules = [
      "d ${cfg.dataDir} 0750 archipel archipel -"
      "d ${configDir} 0751 archipel archipel -"
    ];

    # Management commands (`archipel user create`, `archipel vault verify`,
    # ...) read /etc/archipel/archipel.toml by default.
    environment.etc =
      if provisioned then
        { "archipel".source = configDir; }
      else
        { "archipel/archipel.toml".source = configFile; };
    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall listenPorts;

    systemd.services.archipel = {
      description = "Archipel node";
      documentation = [ "file://${cfg.package}/share/doc/archipel/README.md" ];
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "time-sync.target"
      ]
      ++ lib.optional provisioned "archipel-provision.service";
      restartTriggers = lib.optional (!provisioned) configFile;
      unitConfig = {
        RequiresMountsFor = [ cfg.dataDir ];
      }
      // lib.optionalAttrs provisioned { ConditionPathExists = configPath; };
      serviceConfig = {
        Type = "notify";
        ExecStart = "${exe} run --config ${configPath}";
        User = "archipel";
        Group = "archipel";
        # The node pings every WatchdogSec/2 from its runtime; silence restarts it.
        WatchdogSec = 30;
        Restart = "on-failure";
        RestartSec = 5;
        # Flushing the databases and signing the last checkpoint take a moment.
        TimeoutStopSec = 60;

        # Only what it needs: its ports, its data, its configuration. A
        # backup folder outside the data folder needs ReadWritePaths= too.
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.dataDir ];
        ReadOnlyPaths = [ configDir ];
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        UMask = "0077";
      };
    };

    # The archive's key, made once (only the node's user can read it).
    systemd.services.archipel-vault-key = lib.mkIf (!provisioned && cfg.generateVaultKey) {
      description = "Archipel archive key";
      requiredBy = [ "archipel.service" ];
      before = [ "archipel.service" ];
      unitConfig.ConditionPathExists = "!${keyFile}";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${exe} vault keygen ${keyFile}";
        User = "archipel";
        Group = "archipel";
        UMask = "0077";
        PrivateNetwork = true;
        NoNewPrivileges = true;
      };
    };

    # Applies the provisioning file at every boot, before the network, the
    # clock and the node. Idempotent: an unchanged file changes nothing.
    # What it did (or why it refused) is on the console and in the journal.
    systemd.services.archipel-provision = lib.mkIf provisioned {
      description = "Archipel provisioning";
      wantedBy = [ "multi-user.target" ];
      after = [
        "local-fs.target"
        "systemd-tmpfiles-setup.service"
      ];
      wants = [ "local-fs.target" ];
      before = [
        "systemd-networkd.service"
        "systemd-timesyncd.service"
        "archipel.service"
      ];
      unitConfig = {
        DefaultDependencies = false;
        RequiresMountsFor = [
          "/var/lib/archipel"
          (dirOf cfg.provisioningFile)
        ];
        ConditionPathExists = cfg.provisioningFile;
      };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${exe} provision apply ${cfg.provisioningFile}";
        # The node runs as `archipel`: it owns its data and its configuration.
        ExecStartPost = "${pkgs.coreutils}/bin/chown -R archipel:archipel /var/lib/archipel ${configDir}";
        StandardOutput = "journal+console";
        StandardError = "journal+console";
      };
    };
  };
}
