{
  description = "myalloc: a buddy-system malloc on the program break, with its Python package and benchmark suite";

  # `nix flake lock` pins nixpkgs in flake.lock (not committed yet: our machines cannot
  # reach the Nix binary cache or GitHub to produce it).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      src = nixpkgs.lib.cleanSource ./.;
    in
    {
      packages = forAll (pkgs:
        let
          # The preload library, target/release/libmyalloc.so, as $out/lib/libmyalloc.so.
          preload = pkgs.rustPlatform.buildRustPackage {
            pname = "myalloc";
            version = "0.1.0";
            inherit src;
            cargoLock.lockFile = ./Cargo.lock;
            cargoBuildFlags = [ "--lib" ];
            doCheck = false; # the test suite preloads the library into real programs
            installPhase = ''
              runHook preInstall
              install -Dm755 target/*/release/libmyalloc.so $out/lib/libmyalloc.so \
                || install -Dm755 target/release/libmyalloc.so $out/lib/libmyalloc.so
              runHook postInstall
            '';
          };
          py = pkgs.python3Packages;
        in
        {
          default = preload;
          # The Python package (pyo3 + maturin); its wheel carries the preload library.
          python = py.buildPythonPackage {
            pname = "myalloc";
            version = "0.1.0";
            format = "pyproject";
            src = src + "/py";
            cargoDeps = pkgs.rustPlatform.importCargoLock { lockFile = ./py/Cargo.lock; };
            nativeBuildInputs = [ pkgs.rustPlatform.cargoSetupHook pkgs.rustPlatform.maturinBuildHook ];
            preBuild = ''
              cp ${preload}/lib/libmyalloc.so python/myalloc/libmyalloc.so
            '';
            pythonImportsCheck = [ "myalloc" ];
          };
        });

      apps = forAll (pkgs: {
        # nix run .#bench -- --quick --out results
        bench = {
          type = "app";
          program = toString (pkgs.writeShellScript "myalloc-bench" ''
            export PATH=${pkgs.lib.makeBinPath [ pkgs.strace pkgs.gcc pkgs.sqlite pkgs.git pkgs.xz pkgs.perl ]}:$PATH
            exec ${pkgs.python3.withPackages (p: [ p.matplotlib ])}/bin/python ${src}/bench/run.py \
              --myalloc ${self.packages.${pkgs.system}.default}/lib/libmyalloc.so \
              --allocators glibc,myalloc,jemalloc=${pkgs.jemalloc}/lib/libjemalloc.so,mimalloc=${pkgs.mimalloc}/lib/libmimalloc.so,tcmalloc=${pkgs.gperftools}/lib/libtcmalloc_minimal.so \
              "$@"
          '');
        };
        # nix run .#bench-speed -- --quick --out results-speed
        bench-speed = {
          type = "app";
          program = toString (pkgs.writeShellScript "myalloc-bench-speed" ''
            export PATH=${pkgs.lib.makeBinPath [ pkgs.gcc pkgs.valgrind ]}:$PATH
            exec ${pkgs.python3.withPackages (p: [ p.matplotlib ])}/bin/python ${src}/bench/speed.py \
              --myalloc ${self.packages.${pkgs.system}.default}/lib/libmyalloc.so \
              --allocators glibc,myalloc,jemalloc=${pkgs.jemalloc}/lib/libjemalloc.so,mimalloc=${pkgs.mimalloc}/lib/libmimalloc.so,tcmalloc=${pkgs.gperftools}/lib/libtcmalloc_minimal.so \
              "$@"
          '');
        };
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt pkgs.maturin
            (pkgs.python3.withPackages (p: [ p.pytest p.hypothesis p.matplotlib p.pip ]))
            pkgs.gcc pkgs.gnumake pkgs.strace pkgs.valgrind pkgs.sqlite pkgs.git pkgs.xz pkgs.perl
            pkgs.jemalloc pkgs.mimalloc pkgs.gperftools pkgs.hadolint
          ];
          shellHook = ''
            export MYALLOC_PEERS="jemalloc=${pkgs.jemalloc}/lib/libjemalloc.so,mimalloc=${pkgs.mimalloc}/lib/libmimalloc.so,tcmalloc=${pkgs.gperftools}/lib/libtcmalloc_minimal.so"
          '';
        };
      });
    };
}
