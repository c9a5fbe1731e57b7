import { Bool, Field, Float32, Int32, List, Schema, Struct, Utf8 } from 'apache-arrow';

/**
 * The prepared-record schema, declared once. Bump PREPARED_SCHEMA_VERSION on
 * any change a reader could notice; it is written into every shard's
 * metadata and into manifest.json.
 *
 * Version 2 adds the ASCII tree (`tree`) and its nodes (`tree_nodes`);
 * version 3 adds `absent`, labels a dataset says are not in the image;
 * version 4 adds `facts`, statements a dataset gives besides captions and QA;
 * version 5 adds `uncounted`, labels whose objects were not all annotated
 * (LVIS `not_exhaustive_category_ids`), which nothing counts.
 * Box corners are float32, normalised to 0..1 (top-left origin). Polygon
 * masks are the dataset's own JSON text (pixels of the annotated image);
 * RLE masks are COCO's compressed string form.
 */
export const PREPARED_SCHEMA_VERSION = 'instructify.prepared/5';

const utf8 = () => new Utf8();
const f32 = () => new Float32();
const list = (t: Utf8 | Struct | Int32, nullable = false) => new List(new Field('item', t, nullable));
const field = (name: string, type: ConstructorParameters<typeof Field>[1], nullable = false) => new Field(name, type, nullable);

const maskType = new Struct([
  field('format', utf8()),
  // JSON text of [[x0, y0, x1, y1, ...], ...] in pixels, as the dataset wrote it.
  field('polygons', utf8(), true),
  field('rle', utf8(), true),
  field('height', new Int32()),
  field('width', new Int32()),
]);

const boxType = new Struct([
  field('label', utf8()),
  field('x1', f32()),
  field('y1', f32()),
  field('x2', f32()),
  field('y2', f32()),
  field('attributes', list(utf8())),
  field('relations', list(utf8())),
  field('source', utf8()),
  field('iscrowd', new Bool()),
  field('source_id', utf8(), true),
  field('mask', maskType, true),
]);

export const preparedSchema = new Schema(
  [
    field('image', utf8()),
    field('width', new Int32(), true),
    field('height', new Int32(), true),
    field('ref', utf8()),
    field('sources', list(utf8())),
    field('captions', list(new Struct([field('text', utf8()), field('source', utf8())]))),
    field('facts', list(new Struct([field('text', utf8()), field('source', utf8())]))),
    field('boxes', list(boxType)),
    field('qa', list(new Struct([field('question', utf8()), field('answer', utf8()), field('answers', list(utf8())), field('source', utf8())]))),
    field(
      'regions',
      list(new Struct([field('text', utf8()), field('x1', f32()), field('y1', f32()), field('x2', f32()), field('y2', f32()), field('source', utf8())])),
    ),
    field('absent', list(utf8())),
    field('uncounted', list(utf8())),
    field('tree', utf8(), true),
    field(
      'tree_nodes',
      list(
        new Struct([
          field('labels', list(utf8())),
          field('x1', f32()),
          field('y1', f32()),
          field('x2', f32()),
          field('y2', f32()),
          field('cx', f32()),
          field('cy', f32()),
          field('pixel_pct', f32()),
          field('depths', list(new Int32()), true),
          field('parent', new Int32()),
          field('merged', new Int32()),
        ]),
      ),
    ),
  ],
  new Map([['instructify.schema', PREPARED_SCHEMA_VERSION]]),
);

/**
 * Conversation shards, written by `generate`: one row per accepted
 * conversation. `conversations` is LLaVA's form (first human turn starts
 * with "<image>\n"); `information` is what the prompt was given and
 * `removed` the facts the conversation used, for provenance;
 * `tree_description` says whether the model's description of the tree
 * passed its check ('checked') or the boxes' own facts stood in for it
 * ('tree-facts').
 */
export const CONVERSATION_SCHEMA_VERSION = 'instructify.conversations/2';

export const conversationSchema = new Schema(
  [
    field('id', utf8()),
    field('image', utf8()),
    field('prompt_type', utf8()),
    field('generator', utf8()),
    field('conversations', list(new Struct([field('from', utf8()), field('value', utf8())]))),
    field('information', list(utf8())),
    field('removed', list(utf8())),
    // Where the tree's part of `information` came from: checked, tree-facts, unchecked or none (/2).
    field('tree_description', utf8()),
    field('model', utf8()),
    field('temperature', f32()),
    field('max_tokens', new Int32()),
    field('seed', new Int32(), true),
  ],
  new Map([['instructify.schema', CONVERSATION_SCHEMA_VERSION]]),
);
