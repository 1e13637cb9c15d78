import { describe, expect, it } from 'vitest';
import { formatRecipe, IMAGE_FAMILIES, IMAGE_RECIPE_FORMAT, imageRecipe } from './recipes.ts';

describe('imageRecipe', () => {
  it('describes every family as a recipe with the CPU provider as the last fallback', () => {
    expect(IMAGE_FAMILIES).toEqual(['orin-nano', 'rpi5', 'x86-gpu', 'x86-cpu']);
    for (const family of IMAGE_FAMILIES) {
      const recipe = imageRecipe({ family, agentVersion: '1.2.3' });
      expect(recipe?.format).toBe(IMAGE_RECIPE_FORMAT);
      expect(recipe?.notice).toMatch(/^RECIPE ONLY/);
      expect(recipe?.hardwareProfile).toBe(family);
      expect(recipe?.providers.at(-1)).toBe('cpu');
      expect(recipe?.steps.join('\n')).toContain('@edgeloop/agent@1.2.3');
    }
  });

  it('installs the CUDA 12 providers through onnxruntime-node on x64 GPU boxes', () => {
    const recipe = imageRecipe({ family: 'x86-gpu', agentVersion: '0.1.0' });
    expect(recipe?.arch).toBe('x64');
    expect(recipe?.providers).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(recipe?.onnxruntime.installMode).toBe('nuget-cuda12');
    expect(recipe?.onnxruntime.env).toEqual({ ONNXRUNTIME_NODE_INSTALL: 'cuda12' });
  });

  it('builds onnxruntime from source on Jetson, where npm has only arm64 CPU binaries', () => {
    const recipe = imageRecipe({ family: 'orin-nano', agentVersion: '0.1.0' });
    expect(recipe?.arch).toBe('arm64');
    expect(recipe?.onnxruntime.installMode).toBe('source-build');
    expect(recipe?.onnxruntime.env).toEqual({ ONNXRUNTIME_NODE_INSTALL: 'skip' });
    expect(recipe?.steps.join('\n')).toMatch(/build\.sh .*--build_nodejs .*--use_cuda .*--use_tensorrt/);
  });

  it('uses the bundled CPU binaries on a Raspberry Pi 5', () => {
    const recipe = imageRecipe({ family: 'rpi5', agentVersion: '0.1.0' });
    expect(recipe?.providers).toEqual(['cpu']);
    expect(recipe?.onnxruntime.installMode).toBe('bundled-cpu');
  });

  it('knows no other family, including names of Object.prototype members', () => {
    for (const family of ['jetson-tx1', 'toString', '__proto__', '']) {
      expect(imageRecipe({ family, agentVersion: '0.1.0' })).toBeNull();
    }
  });
});

describe('formatRecipe', () => {
  it('starts with the recipe notice and numbers the steps', () => {
    const recipe = imageRecipe({ family: 'rpi5', agentVersion: '0.1.0' });
    if (recipe === null) throw new Error('rpi5 has a recipe');
    const lines = formatRecipe(recipe).split('\n');
    expect(lines[0]).toBe(`# ${recipe.notice}`);
    expect(lines).toContain(`  1. ${recipe.steps[0]}`);
    expect(lines).toContain(`  ${recipe.steps.length}. ${recipe.steps.at(-1)}`);
  });
});
