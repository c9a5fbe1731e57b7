import { rng, syntheticImage } from './dist/src/synthetic.js';
import { buildTree } from './dist/src/tree/build.js';
const objects = Number(process.argv[2] ?? 50);
const r = rng(7);
const imgs = Array.from({ length: objects === 300 ? 40 : 200 }, (_, i) => {
  const img = syntheticImage(r, i + 1, { objects: [objects, objects], polygonPoints: 24, width: 640, height: 480 });
  return { width: img.width, height: img.height, boxes: img.objects.slice(0, objects).map((o) => ({ label: o.label, x1: o.bbox[0] / img.width, y1: o.bbox[1] / img.height, x2: (o.bbox[0] + o.bbox[2]) / img.width, y2: (o.bbox[1] + o.bbox[3]) / img.height, attributes: [], relations: [], source: 'b', iscrowd: false, sourceId: String(o.id), mask: { format: 'polygon', polygons: JSON.stringify([o.polygon]), rle: null, height: img.height, width: img.width } })) };
});
for (let k = 0; k < 3; k++) { const t = performance.now(); for (const im of imgs) buildTree(im); console.log(objects, 'objs', ((performance.now() - t) / imgs.length).toFixed(2), 'ms/tree'); }
