import path from 'node:path';
import { access } from 'node:fs/promises';
import type { ImageRecord, Reject, TreeNodeRow } from '../types.js';
import { buildTree, DEFAULT_TREE_OPTIONS, flatBoxes, type Tree, type TreeNode, type TreeOptions } from './build.js';
import { loadDepthLayers } from './depth.js';
import { gridFor } from './masks.js';

/**
 * The tree stage: adds `tree` and `treeNodes` to a record. Runs inside the
 * lanes, so it uses every core the run has.
 */
export interface TreeStageOptions {
  /** 'tree' (default), 'flat' (the `[label, x1, y1, x2, y2]` ablation) or 'none'. */
  mode: 'tree' | 'flat' | 'none';
  tree: TreeOptions;
  /** Folder of depth maps: `<depthDir>/<image path without extension>.png`. */
  depthDir: string | null;
  /** Depth maps where larger values are farther (metric depth). Default: larger is nearer (inverse depth). */
  depthLargerIsFarther: boolean;
}

export const DEFAULT_TREE_STAGE: TreeStageOptions = { mode: 'tree', tree: DEFAULT_TREE_OPTIONS, depthDir: null, depthLargerIsFarther: false };

export function flattenNodes(roots: TreeNode[]): TreeNodeRow[] {
  const rows: TreeNodeRow[] = [];
  for (const r of roots) addRows(rows, r, -1);
  return rows;
}

// A module-level function, not a closure per record: V8 drops a function's
// optimised code when no closure of it is left, so a closure per call was
// compiled again after every full collection.
function addRows(rows: TreeNodeRow[], n: TreeNode, parent: number): void {
  const index = rows.length;
  rows.push({ labels: n.labels, x1: n.x1, y1: n.y1, x2: n.x2, y2: n.y2, cx: n.cx, cy: n.cy, pixelPct: n.pixelPct, depths: n.depths, parent, merged: n.merged });
  for (const c of n.children) addRows(rows, c, index);
}

export function depthFileFor(depthDir: string, image: string): string {
  const ext = path.posix.extname(image);
  return path.join(depthDir, `${ext ? image.slice(0, -ext.length) : image}.png`);
}

/**
 * Add the tree to a record; returns a reject when a depth map exists but
 * cannot be read. Without a depth folder nothing waits, so the caller need
 * not either: the answer is then null, not a promise (an await per record
 * let the run's other queued work in, timed as the tree's).
 */
export function addTree(rec: ImageRecord, o: TreeStageOptions): Promise<Reject | null> | null {
  if (o.mode === 'none' || rec.boxes.length === 0) return null;
  if (o.mode === 'flat') {
    rec.tree = flatBoxes(rec.boxes);
    return null;
  }
  if (o.depthDir === null) {
    setTree(rec, buildTree({ boxes: rec.boxes, uncounted: rec.uncounted, width: rec.width, height: rec.height, depth: null }, o.tree));
    return null;
  }
  return addTreeWithDepth(rec, o, o.depthDir);
}

function setTree(rec: ImageRecord, tree: Tree): void {
  rec.tree = tree.text;
  rec.treeNodes = flattenNodes(tree.roots);
}

async function addTreeWithDepth(rec: ImageRecord, o: TreeStageOptions, depthDir: string): Promise<Reject | null> {
  let depth = null;
  let problem: Reject | null = null;
  const file = depthFileFor(depthDir, rec.image);
  const exists = await access(file).then(
    () => true,
    () => false,
  );
  if (exists) {
    try {
      depth = await loadDepthLayers(file, gridFor(rec.width ?? 1, rec.height ?? 1), o.depthLargerIsFarther);
    } catch (err) {
      problem = { reason: 'depth-unreadable', detail: `${file}: ${(err as Error).message}`, source: null, file, offset: null, image: rec.image };
    }
  }
  setTree(rec, buildTree({ boxes: rec.boxes, uncounted: rec.uncounted, width: rec.width, height: rec.height, depth }, o.tree));
  return problem;
}
