import { createCategoryIds } from './coco.ts';
import { boxesOf, clampBox, type DatasetMember } from './members.ts';

/*
 * YOLO txt: one `labels/<stem>.txt` per image (the stem of `images/<stem>.jpg`), one line per box:
 * `class cx cy w h`, normalised to the image size. The class list (`classes.txt`, `data.yaml`) is
 * known only at the end when the boxes are predictions, so it is written last.
 */

const fixed = (value: number) => {
  const text = value.toFixed(6);
  return text === '-0.000000' ? '0.000000' : text;
};

export function createYoloWriter(options: { readonly labelled: boolean; readonly categories?: readonly string[] }) {
  const classes = createCategoryIds(options.categories);
  return {
    /** The label file text of one member (empty text for an image without boxes). */
    labelsOf(member: DatasetMember): string {
      const { width, height } = member.metadata.image;
      const lines: string[] = [];
      for (const box of boxesOf(member, options.labelled)) {
        const clamped = clampBox(box.box, width, height);
        if (!clamped) continue;
        const [x1, y1, x2, y2] = clamped;
        const classIndex = classes.idOf(box.label) - 1;
        lines.push(
          `${classIndex} ${fixed((x1 + x2) / 2 / width)} ${fixed((y1 + y2) / 2 / height)} ${fixed((x2 - x1) / width)} ${fixed((y2 - y1) / height)}`,
        );
      }
      return lines.length > 0 ? `${lines.join('\n')}\n` : '';
    },
    /** Class names by index. */
    classNames(): string[] {
      return classes.names();
    },
    /** An Ultralytics data.yaml for the export as unpacked (paths relative to it). */
    dataYaml(): string {
      const names = classes.names();
      return [
        '# edgeloop dataset export (YOLO txt)',
        'path: .',
        'train: train.txt',
        'val: val.txt',
        'test: test.txt',
        `nc: ${names.length}`,
        'names:',
        ...names.map((name, i) => `  ${i}: ${JSON.stringify(name)}`),
        '',
      ].join('\n');
    },
  };
}
