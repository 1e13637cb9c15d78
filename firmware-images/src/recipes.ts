/*
 * Image recipes per device family: what an image for that family must contain to run the agent.
 * A recipe is a description, not an image builder: edgeloop-image prints it, and a person or a
 * build system (Dockerfile, pi-gen stage, Yocto/JetPack layer) follows it.
 *
 * Format `edgeloop.image-recipe/v1` (JSON with `edgeloop-image build --family F --json`):
 *
 *   format           "edgeloop.image-recipe/v1"
 *   notice           says that this is a recipe, not a built image
 *   family           device family (orin-nano, rpi5, x86-gpu, x86-cpu)
 *   hardwareProfile  the profile the agent reports and releases list in `hardware`
 *   description      the hardware in words
 *   arch             arm64 | x64 (Node's os.arch())
 *   baseImage        the OS or container image to start from
 *   node             Node.js version range the agent needs
 *   agent            { package, version }: the agent to install
 *   providers        onnxruntime execution providers in preference order (the agent's EP list)
 *   onnxruntime      { installMode, env, notes }:
 *                      bundled-cpu   the onnxruntime-node npm package's own CPU binaries
 *                      nuget-cuda12  onnxruntime-node's install script fetches the CUDA 12 and
 *                                    TensorRT provider libraries at image build time
 *                                    (ONNXRUNTIME_NODE_INSTALL=cuda12; linux x64 only)
 *                      source-build  onnxruntime built from source with --build_nodejs for the
 *                                    board's CUDA/TensorRT (npm ships linux arm64 CPU-only binaries)
 *   systemPackages   OS packages the agent uses (ffmpeg, camera stacks)
 *   trust            where the release verification public keys go (never a private key)
 *   steps            the build, in order, in words and shell
 */

export const IMAGE_RECIPE_FORMAT = 'edgeloop.image-recipe/v1';

export type OnnxRuntimeInstallMode = 'bundled-cpu' | 'nuget-cuda12' | 'source-build';

export type ImageRecipe = {
  readonly format: typeof IMAGE_RECIPE_FORMAT;
  readonly notice: string;
  readonly family: string;
  readonly hardwareProfile: string;
  readonly description: string;
  readonly arch: 'arm64' | 'x64';
  readonly baseImage: string;
  readonly node: string;
  readonly agent: { readonly package: string; readonly version: string };
  readonly providers: readonly string[];
  readonly onnxruntime: {
    readonly installMode: OnnxRuntimeInstallMode;
    readonly env: Readonly<Record<string, string>>;
    readonly notes: string;
  };
  readonly systemPackages: readonly string[];
  readonly trust: string;
  readonly steps: readonly string[];
};

type FamilySpec = Pick<
  ImageRecipe,
  'description' | 'arch' | 'baseImage' | 'providers' | 'onnxruntime' | 'systemPackages'
> & { readonly onnxruntimeSteps: readonly string[] };

const ORT_VERSION = '1.30.0';
const NODE_RANGE = '>=20.19';
const TRUST_DIR = '/etc/edgeloop/trusted-keys';

const FAMILIES: Readonly<Record<string, FamilySpec>> = {
  'orin-nano': {
    description: 'NVIDIA Jetson Orin Nano (JetPack 6, CUDA 12, TensorRT 10), arm64',
    arch: 'arm64',
    baseImage: 'nvcr.io/nvidia/l4t-jetpack:r36.4.0 (JetPack 6.1 / L4T r36.4)',
    providers: ['tensorrt', 'cuda', 'cpu'],
    onnxruntime: {
      installMode: 'source-build',
      env: { ONNXRUNTIME_NODE_INSTALL: 'skip' },
      notes:
        'npm ships linux arm64 CPU-only binaries; build onnxruntime with CUDA and TensorRT on the board or ' +
        'an arm64 builder with the same JetPack, and replace the binding',
    },
    systemPackages: ['ffmpeg', 'v4l-utils', 'gstreamer1.0-tools', 'build-essential', 'cmake', 'python3'],
    onnxruntimeSteps: [
      `git clone --branch v${ORT_VERSION} --recursive https://github.com/microsoft/onnxruntime /opt/src/onnxruntime`,
      'cd /opt/src/onnxruntime && ./build.sh --config Release --parallel --skip_tests --build_shared_lib ' +
        '--build_nodejs --use_cuda --cuda_home /usr/local/cuda --cudnn_home /usr/lib/aarch64-linux-gnu ' +
        '--use_tensorrt --tensorrt_home /usr/lib/aarch64-linux-gnu',
      'copy build/Linux/Release/js/node/bin/napi-v6/linux/arm64/* (binding and libonnxruntime*.so*) over ' +
        'node_modules/onnxruntime-node/bin/napi-v6/linux/arm64/',
    ],
  },
  rpi5: {
    description: 'Raspberry Pi 5 (Cortex-A76, no GPU inference), arm64',
    arch: 'arm64',
    baseImage: 'Raspberry Pi OS Lite 64-bit (Debian 12 bookworm)',
    providers: ['cpu'],
    onnxruntime: {
      installMode: 'bundled-cpu',
      env: { ONNXRUNTIME_NODE_INSTALL: 'skip' },
      notes: 'the npm package ships linux arm64 CPU binaries; nothing to download',
    },
    systemPackages: ['ffmpeg', 'rpicam-apps', 'libcamera-tools'],
    onnxruntimeSteps: [],
  },
  'x86-gpu': {
    description: 'x86-64 box with an NVIDIA GPU (CUDA 12, cuDNN 9, TensorRT 10)',
    arch: 'x64',
    baseImage: 'nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04 (plus TensorRT 10 runtime libraries)',
    providers: ['tensorrt', 'cuda', 'cpu'],
    onnxruntime: {
      installMode: 'nuget-cuda12',
      env: { ONNXRUNTIME_NODE_INSTALL: 'cuda12' },
      notes:
        "onnxruntime-node's install script downloads the CUDA and TensorRT provider libraries at image " +
        'build time; the device never downloads anything but npm packages and models',
    },
    systemPackages: ['ffmpeg', 'v4l-utils', 'libnvinfer10', 'libnvinfer-plugin10', 'libnvonnxparsers10'],
    onnxruntimeSteps: ['ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js'],
  },
  'x86-cpu': {
    description: 'x86-64 box without a GPU',
    arch: 'x64',
    baseImage: 'node:20-bookworm-slim',
    providers: ['cpu'],
    onnxruntime: {
      installMode: 'bundled-cpu',
      env: { ONNXRUNTIME_NODE_INSTALL: 'skip' },
      notes: 'the npm package ships linux x64 CPU binaries; nothing to download',
    },
    systemPackages: ['ffmpeg', 'v4l-utils'],
    onnxruntimeSteps: [],
  },
};

export const IMAGE_FAMILIES: readonly string[] = Object.freeze(Object.keys(FAMILIES));

/** The recipe for a device family, or null for an unknown family (see IMAGE_FAMILIES). */
export function imageRecipe(options: { family: string; agentVersion: string }): ImageRecipe | null {
  const spec = Object.hasOwn(FAMILIES, options.family) ? FAMILIES[options.family] : undefined;
  if (spec === undefined) return null;
  const envPrefix = Object.entries(spec.onnxruntime.env)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
  const steps = [
    `start from ${spec.baseImage}`,
    `install OS packages: ${spec.systemPackages.join(' ')}`,
    `install Node.js ${NODE_RANGE} for ${spec.arch}`,
    `${envPrefix} npm install --omit=dev @edgeloop/agent@${options.agentVersion}`,
    ...spec.onnxruntimeSteps,
    `install ${TRUST_DIR}/*.pub: the public keys that releases are verified against (edgeloop-image keygen)`,
    `write /etc/edgeloop/agent.json with hardware.profile "${options.family}" (execution providers ${spec.providers.join(' -> ')})`,
    'install a systemd unit running `edgeloop-agent --config /etc/edgeloop/agent.json` with Restart=always',
    'leave device identity and credentials out of the image: they are provisioned per device at first boot',
  ];
  return Object.freeze({
    format: IMAGE_RECIPE_FORMAT,
    notice: 'RECIPE ONLY: this describes an image; edgeloop-image does not build images',
    family: options.family,
    hardwareProfile: options.family,
    description: spec.description,
    arch: spec.arch,
    baseImage: spec.baseImage,
    node: NODE_RANGE,
    agent: { package: '@edgeloop/agent', version: options.agentVersion },
    providers: spec.providers,
    onnxruntime: spec.onnxruntime,
    systemPackages: spec.systemPackages,
    trust: `${TRUST_DIR}/*.pub (public keys only; signing keys never go on a device or the control plane)`,
    steps,
  });
}

/** A recipe as text for people: a header saying it is a recipe, the facts, numbered steps. */
export function formatRecipe(recipe: ImageRecipe): string {
  const lines = [
    `# ${recipe.notice}`,
    `# ${recipe.format}`,
    `family:          ${recipe.family} (${recipe.description})`,
    `hardwareProfile: ${recipe.hardwareProfile}`,
    `arch:            ${recipe.arch}`,
    `baseImage:       ${recipe.baseImage}`,
    `node:            ${recipe.node}`,
    `agent:           ${recipe.agent.package}@${recipe.agent.version}`,
    `providers:       ${recipe.providers.join(' -> ')}`,
    `onnxruntime:     ${recipe.onnxruntime.installMode} (${Object.entries(recipe.onnxruntime.env)
      .map(([name, value]) => `${name}=${value}`)
      .join(' ')}): ${recipe.onnxruntime.notes}`,
    `systemPackages:  ${recipe.systemPackages.join(' ')}`,
    `trust:           ${recipe.trust}`,
    'steps:',
    ...recipe.steps.map((step, index) => `  ${index + 1}. ${step}`),
  ];
  return lines.join('\n');
}
