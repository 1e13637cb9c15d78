import { z } from 'zod';
import * as api from './api.ts';
import { BrokerAuthenticateRequest, BrokerAuthorizeRequest, BrokerHookResponse } from './broker-hooks.ts';
import { CHANNEL_SCHEMAS } from './codec.ts';
import * as datasets from './datasets.ts';
import { DriftList, DriftState, SetDriftReferenceRequest } from './drift.ts';
import { ModelLineage } from './lineage.ts';
import { ModelManifest, ModelRelease, SignedModelRelease } from './models.ts';
import {
  RetrainingPolicy,
  RetrainingPolicyView,
  RetrainingRun,
  RetrainingRunList,
  RetrainingWebhookPayload,
} from './retraining.ts';
import * as samples from './samples.ts';

/**
 * JSON Schema (draft 2020-12) of every message and document, keyed by file stem, for clients not
 * written in TypeScript. Schemas describe the accepted input (defaults may be left out).
 */
export function jsonSchemas(): Record<string, unknown> {
  const documents: Record<string, z.ZodType> = {
    ...Object.fromEntries(Object.entries(CHANNEL_SCHEMAS).map(([channel, schema]) => [`message.${channel}`, schema])),
    'model.manifest': ModelManifest,
    'model.release': ModelRelease,
    'model.signed-release': SignedModelRelease,
    'api.enroll-device-request': api.EnrollDeviceRequest,
    'api.enroll-device-response': api.EnrollDeviceResponse,
    'api.patch-device-request': api.PatchDeviceRequest,
    'api.device': api.DeviceView,
    'api.device-list': api.DeviceList,
    'api.fleet-summary': api.FleetSummary,
    'api.error': api.ApiError,
    'api.device-detail': api.DeviceDetail,
    'api.telemetry-history': api.TelemetryHistory,
    'api.message-list': api.MessageList,
    'api.set-desired-request': api.SetDesiredRequest,
    'api.set-desired-response': api.SetDesiredResponse,
    'api.command-request': api.CommandRequest,
    'api.command-response': api.CommandResponse,
    'api.create-token-request': api.CreateTokenRequest,
    'api.create-token-response': api.CreateTokenResponse,
    'api.token': api.ApiTokenView,
    'api.token-list': api.TokenList,
    'api.dead-letter': api.DeadLetterView,
    'api.dead-letter-list': api.DeadLetterList,
    'api.healthz': api.HealthzResponse,
    'api.readyz': api.ReadyzResponse,
    'api.server-event': api.ServerEvent,
    'api.model': api.ModelView,
    'api.model-summary': api.ModelSummary,
    'api.model-list': api.ModelList,
    'api.model-lineage': ModelLineage,
    'api.broker-authenticate-request': BrokerAuthenticateRequest,
    'api.broker-authorize-request': BrokerAuthorizeRequest,
    'api.broker-hook-response': BrokerHookResponse,
    'api.drift-state': DriftState,
    'api.drift-list': DriftList,
    'api.set-drift-reference-request': SetDriftReferenceRequest,
    'retraining.policy': RetrainingPolicy,
    'retraining.policy-view': RetrainingPolicyView,
    'retraining.run': RetrainingRun,
    'retraining.run-list': RetrainingRunList,
    'retraining.webhook-payload': RetrainingWebhookPayload,
    'api.rollout-spec': api.RolloutSpec,
    'api.create-rollout-request': api.CreateRolloutRequest,
    'api.rollout': api.RolloutView,
    'api.rollout-list': api.RolloutList,
    'api.rollout-dry-run': api.RolloutDryRun,
    'api.rollout-action-request': api.RolloutActionRequest,
    'api.rollout-event': api.RolloutEventView,
    'api.rollout-event-list': api.RolloutEventList,
    'api.rollout-device': api.RolloutDeviceView,
    'api.rollout-device-list': api.RolloutDeviceList,
    'sample.policy': samples.SamplePolicy,
    'sample.metadata': samples.SampleMetadata,
    'sample.set-policy-request': samples.SetSamplePolicyRequest,
    'sample.policy-list': samples.SamplePolicyList,
    'sample.upload-state': samples.SampleUploadState,
    'dataset.create-request': datasets.CreateDatasetRequest,
    'dataset.view': datasets.DatasetView,
    'dataset.list': datasets.DatasetList,
    'dataset.coco-labels': datasets.CocoLabels,
  };
  return Object.fromEntries(
    Object.entries(documents).map(([name, schema]) => [
      name,
      {
        $id: `https://edgeloop.dev/schemas/${name}.json`,
        ...z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }),
      },
    ]),
  );
}
