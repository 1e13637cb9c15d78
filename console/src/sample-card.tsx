import type { ApiClient, SampleView } from '@edgeloop/protocol';
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { formatTime } from './format.ts';
import { boxCaption, boxRect } from './samples.ts';

/*
 * A hard sample as a card: its thumbnail with the model's boxes drawn over it (an SVG whose
 * viewBox is the stored image's size, so the boxes scale with the thumbnail), class and score on
 * each box, and where and why it was captured. The thumbnail needs the bearer token, so it is
 * fetched with the typed client and shown through an object URL.
 */

/** The thumbnail of a sample as an object URL (revoked when the card goes), or a failure in words. */
function useThumbnail(client: ApiClient, id: string): { url: string | null; error: string | null } {
  const [state, setState] = useState<{ url: string | null; error: string | null }>({ url: null, error: null });
  useEffect(() => {
    const controller = new AbortController();
    let url: string | null = null;
    void (async () => {
      const download = await client.samples.thumbnail(id, controller.signal);
      if (controller.signal.aborted) return;
      if (!download.ok) {
        setState({ url: null, error: download.error.message });
        return;
      }
      try {
        const blob = await new Response(download.value.body).blob();
        if (controller.signal.aborted) return;
        url = URL.createObjectURL(blob);
        setState({ url, error: null });
      } catch (error) {
        if (!controller.signal.aborted) setState({ url: null, error: String(error) });
      }
    })();
    return () => {
      controller.abort();
      if (url) URL.revokeObjectURL(url);
    };
  }, [client, id]);
  return state;
}

export function SampleCard(props: {
  client: ApiClient;
  sample: SampleView;
  /** A selection checkbox (operators), or nothing (viewers). */
  select?: ComponentChildren;
  compact?: boolean;
}) {
  const { sample } = props;
  const thumbnail = useThumbnail(props.client, sample.id);
  const { width, height } = sample.image;
  const font = Math.max(10, Math.round(width / 28));
  return (
    <figure class={`sample${props.compact ? ' compact' : ''}`} data-sample={sample.id}>
      <div class="thumb" style={{ aspectRatio: `${width} / ${height}` }}>
        {thumbnail.url ? (
          <img src={thumbnail.url} alt={`sample ${sample.id} from ${sample.deviceId}`} />
        ) : (
          <span class="thumb-note">{thumbnail.error ? `no thumbnail: ${thumbnail.error}` : 'Loading…'}</span>
        )}
        <svg
          class="boxes"
          viewBox={`0 0 ${width} ${height}`}
          preserveAspectRatio="none"
          role="img"
          aria-label={`${sample.predictions.length} predicted boxes`}
        >
          {sample.predictions.map((prediction, i) => {
            const rect = boxRect(prediction.box, sample.image);
            const caption = boxCaption(prediction);
            const above = rect.y >= font * 1.3;
            return (
              <g key={i} data-box={caption}>
                <rect
                  x={rect.x}
                  y={rect.y}
                  width={rect.width}
                  height={rect.height}
                  class="box"
                  vector-effect="non-scaling-stroke"
                />
                <rect
                  x={rect.x}
                  y={above ? rect.y - font * 1.3 : rect.y}
                  width={caption.length * font * 0.62 + font * 0.4}
                  height={font * 1.3}
                  class="box-tag"
                />
                <text x={rect.x + font * 0.2} y={(above ? rect.y : rect.y + font * 1.3) - font * 0.3} font-size={font}>
                  {caption}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
      <figcaption>
        {props.select}
        <span class="sample-device">{sample.deviceId}</span>
        {sample.site ? <span class="chip">site={sample.site}</span> : null}
        <span class="chip">{sample.strategy}</span>
        {props.compact ? null : <span class="muted">{sample.model ? sample.model.id : 'no model'}</span>}
        <time dateTime={new Date(sample.frameTs).toISOString()}>{formatTime(sample.frameTs)}</time>
        {props.compact ? null : <span class="muted reason">{sample.reason}</span>}
      </figcaption>
    </figure>
  );
}
