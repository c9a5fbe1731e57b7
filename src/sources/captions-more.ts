import { InstructifyError } from '../errors.js';
import type { Fragment } from '../types.js';
import { planAsGiven } from './files.js';
import { fragmentForPath, recordHandler, setAside, sentence } from './records.js';
import { emptyFragment, num, rawBox, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * Caption-like datasets the reference reads by name: Visual Spatial
 * Reasoning, Stanford image paragraphs, Visual News, RemoteCLIP, TGRS-HRRSD
 * and Conceptual Captions. Each record names its image by path; COCO and
 * Visual Genome paths join those datasets' records (records.ts refForPath).
 */

/** "The cat is on the mat." as the yes/no question it answers: "Is the cat on the mat?" (null when not of that shape). */
export function yesNoQuestion(statement: string): string | null {
  const m = /^(the|a|an)\s+(.+?)\s+(is|are)\s+(.+?)[.!]?$/i.exec(statement.trim());
  if (!m) return null;
  const verb = m[3]!.toLowerCase();
  return `${verb[0]!.toUpperCase()}${verb.slice(1)} ${m[1]!.toLowerCase()} ${m[2]} ${m[4]}?`;
}

/**
 * VSR (`*.jsonl`): a caption about two objects' spatial relation and whether
 * it is true of the image. A true caption is a fact; a false one becomes
 * a "No." answer to the question it asks (or a negated fact), never a
 * caption: the reference keeps false captions as captions, and so trains
 * a model to say what is not there.
 */
export const vsr: SourceKind = {
  kind: 'vsr',
  family: 'coco',
  expects: 'Visual Spatial Reasoning *.jsonl (image, image_link, caption, label 1/0, relation)',
  plan: async (paths) => planAsGiven(paths, 'captions'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'VSR',
      format: 'jsonl',
      required: ['image', 'caption', 'label'],
      onRecord(el, v) {
        const image = str(el.image);
        const caption = str(el.caption)?.trim();
        if (!image || !caption) return void setAside(ctx, file, v.offset, 'VSR record without image or caption', image ?? null);
        // image_link names the split folder (train2017 or val2017) the COCO file is in.
        const split = /(train|val)20\d\d/.exec(str(el.image_link) ?? '')?.[0];
        const f = fragmentForPath(split ? `${split}/${image}` : image, 'coco', ctx, file.path, v.offset);
        const label = num(el.label);
        if (label === 1) f.facts.push(sentence(caption));
        else if (label === 0) {
          const q = yesNoQuestion(caption);
          if (q) f.qa.push({ id: null, question: q, answer: 'No.', answers: ['No.'] });
          else f.facts.push(`It is not true that ${caption[0]!.toLowerCase()}${sentence(caption).slice(1)}`);
        } else return void setAside(ctx, file, v.offset, `VSR label must be 1 (true) or 0 (false), got ${String(el.label)}`, image);
        ctx.sink.emit(f);
      },
    }),
};

/** Stanford image paragraphs: `paragraphs_v1.json` (image_id, paragraph, url) or its CSV (url, Paragraph): a paragraph caption of a VG image. */
export const image2paragraph: SourceKind = {
  kind: 'image2paragraph',
  family: 'vg',
  expects: 'Stanford image paragraphs paragraphs_v1.json (image_id, paragraph, url) or the CSV (url, Paragraph)',
  plan: async (paths) => planAsGiven(paths, 'paragraphs'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'image paragraphs',
      format: file.path.endsWith('.csv') ? 'csv' : 'json',
      required: ['url'],
      onRecord(el, v) {
        const url = str(el.url) ?? '';
        const paragraph = (str(el.paragraph) ?? str(el.Paragraph) ?? '').trim();
        // The URL's last two parts are the VG file: VG_100K/2356347.jpg or VG_100K_2/...
        const tail = /(VG_100K(?:_2)?\/\d+\.jpg)$/.exec(url)?.[1];
        if (!tail || !paragraph) return void setAside(ctx, file, v.offset, `image paragraph without a VG image URL or text (url ${url || 'missing'})`);
        const f = fragmentForPath(tail, 'vg', ctx, file.path, v.offset);
        f.captions.push(paragraph);
        ctx.sink.emit(f);
      },
    }),
};

/** Visual News `origin/data.json`: caption, topic and source of news photos (image_path relative to origin/). */
export const visualNews: SourceKind = {
  kind: 'visual-news',
  family: 'visual-news',
  expects: 'Visual News origin/data.json (id, caption, topic, source, image_path relative to origin/)',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'Visual News',
      required: ['caption', 'image_path'],
      onRecord(el, v) {
        const p = (str(el.image_path) ?? '').replace(/^\.\//, '');
        const caption = str(el.caption)?.trim();
        if (!p || !caption) return void setAside(ctx, file, v.offset, 'Visual News record without image_path or caption', p || null);
        const f = emptyFragment(`visual-news:${p}`, ctx, file.path, v.offset);
        f.path = p;
        f.captions.push(caption);
        const topic = str(el.topic)?.trim();
        const source = str(el.source)?.trim();
        if (topic) f.facts.push(`This is a news photo about ${topic.replace(/_/g, ' ')}.`);
        if (source) f.facts.push(`It appeared in ${source.toUpperCase() === source ? source : source.replace(/_/g, ' ')} news.`);
        ctx.sink.emit(f);
      },
    }),
};

/**
 * RemoteCLIP captions (`Det-10.csv`, `Ret-3_train.csv`...): tab-separated
 * `title \t filename` with a header. A caption is kept whole, commas and
 * all (the reference splits it at commas and reads the header as a record).
 */
export const remoteclip: SourceKind = {
  kind: 'remoteclip',
  family: 'remoteclip',
  expects: 'RemoteCLIP *.csv: tab-separated title and filename, with a header',
  plan: async (paths) => planAsGiven(paths, 'captions'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'RemoteCLIP captions',
      format: 'tsv',
      required: ['title', 'filename'],
      onRecord(el, v) {
        const name = str(el.filename)?.trim();
        const title = str(el.title)?.trim();
        if (!name || !title) return void setAside(ctx, file, v.offset, 'RemoteCLIP row without title or filename', name ?? null);
        const f = emptyFragment(`remoteclip:${name}`, ctx, file.path, v.offset);
        f.path = name;
        f.captions.push(title);
        ctx.sink.emit(f);
      },
    }),
};

/** TGRS-HRRSD `Annotations.csv` (filename, width, height, class, xmin, ymin, xmax, ymax in pixels): boxes of aerial images in JpegImages/. */
export const hrrsd: SourceKind = {
  kind: 'hrrsd',
  family: 'hrrsd',
  expects: 'TGRS-HRRSD Annotations.csv (filename, width, height, class, xmin, ymin, xmax, ymax; images in JpegImages/)',
  plan: async (paths) => planAsGiven(paths, 'boxes'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'HRRSD annotations',
      format: 'csv',
      required: ['filename', 'class', 'xmin', 'ymin', 'xmax', 'ymax'],
      onRecord(el, v) {
        const name = str(el.filename)?.trim();
        const label = str(el.class)?.trim().replace(/_/g, ' ');
        if (!name || !label) return void setAside(ctx, file, v.offset, 'HRRSD row without filename or class', name ?? null);
        const p = `JpegImages/${name}`;
        const f = emptyFragment(`hrrsd:${p}`, ctx, file.path, v.offset);
        f.path = p;
        const w = num(el.width);
        const h = num(el.height);
        if (w > 0 && h > 0) [f.width, f.height] = [w, h];
        const [x1, y1, x2, y2] = [num(el.xmin), num(el.ymin), num(el.xmax), num(el.ymax)];
        f.boxes.push(rawBox(label, x1, y1, x2 - x1, y2 - y1));
        f.facts.push('An aerial image.');
        ctx.sink.emit(f);
      },
    }),
};

/**
 * Web images by URL, the way img2dataset keeps them: Conceptual Captions'
 * TSV (`caption \t url`, no header) and its Image Labels set (url, labels)
 * name images by URL; an img2dataset folder maps each URL to its file.
 */
export function webRef(url: string): string {
  return `web:${url.trim()}`;
}

function labelsFact(labels: string[]): string | null {
  const xs = labels.map((l) => l.trim()).filter(Boolean);
  if (!xs.length) return null;
  return `In this image you can find ${xs.length > 1 ? `${xs.slice(0, -1).join(', ')} and ${xs.at(-1)}` : xs[0]}.`;
}

function ccHandler(file: PlannedFile, ctx: HandlerContext): FileHandler {
  let rows = 0;
  return {
    format: 'lines',
    onValue(v) {
      const line = String(v.value);
      const cols = line.split('\t');
      // The captions file: caption, url. The Image Labels file: url, labels (comma-separated), MIDs, scores.
      const urlAt = cols.findIndex((c) => /^https?:\/\//.test(c.trim()));
      if (urlAt < 0) {
        // A header row names its columns; any other row without a URL is set aside.
        if (v.index === 0 && /url/i.test(line)) return;
        return void setAside(ctx, file, v.offset, `Conceptual Captions line ${v.index + 1} has no URL`);
      }
      rows++;
      const f: Fragment = emptyFragment(webRef(cols[urlAt]!), ctx, file.path, v.offset);
      if (urlAt === 1) f.captions.push(cols[0]!.trim());
      else {
        const fact = labelsFact((cols[urlAt + 1] ?? '').split(','));
        if (fact) f.facts.push(fact);
      }
      ctx.sink.emit(f);
    },
    finish() {
      if (rows === 0) throw new InstructifyError('E_WRONG_KIND', 'Conceptual Captions: no line with a URL (expected caption<TAB>url, or url<TAB>labels)', { file: file.path, source: ctx.source });
    },
  };
}

export const conceptualCaptions: SourceKind = {
  kind: 'conceptual-captions',
  family: 'web',
  expects: 'Conceptual Captions TSV (caption<TAB>url) and/or Image Labels TSV (url<TAB>labels); images from an img2dataset folder (source img2dataset)',
  plan: async (paths) => planAsGiven(paths, 'captions'),
  handler: ccHandler,
};

